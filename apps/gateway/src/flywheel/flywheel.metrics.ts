/**
 * The data flywheel's Prometheus series on the process registry: what the store writer did with each
 * JetStream message, the feedback the API accepted, and the backlog gauges FlywheelBacklog refreshes
 * (flywheel.backlog.ts). Not the store's own query metrics.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

export class FlywheelMetrics {
  /** outcome: inserted, duplicate (redelivery or retry), orphaned (completion not stored yet), dead_letter, error. */
  readonly storeWrites: Counter<'stream' | 'outcome'>;
  readonly feedbackAccepted: Counter<'kind' | 'completion'>;
  readonly reviewBacklog: Gauge;
  readonly consumerPending: Gauge<'stream'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.storeWrites = new Counter({
      name: 'flywheel_store_writes_total',
      help: 'JetStream records handled by the store writer, by stream and outcome (error: nak and retry)',
      labelNames: ['stream', 'outcome'],
      registers,
    });
    this.feedbackAccepted = new Counter({
      name: 'flywheel_feedback_accepted_total',
      help: 'Feedback acknowledged by JetStream, by kind and by what was known of its completion (known, inflight)',
      labelNames: ['kind', 'completion'],
      registers,
    });
    // Both gauges read one shared store / one shared consumer: every gateway replica reports the same value
    // (aggregate with max, not sum).
    this.reviewBacklog = new Gauge({
      name: 'flywheel_review_backlog',
      help: 'Feedback waiting for review (review status pending: the admin inbox count), refreshed every FLYWHEEL_BACKLOG_METRICS_MS',
      registers,
    });
    this.consumerPending = new Gauge({
      name: 'flywheel_store_consumer_pending',
      help: 'Records the store writer has not stored yet, by stream: its durable JetStream consumer num_pending + num_ack_pending',
      labelNames: ['stream'],
      registers,
    });
  }
}
