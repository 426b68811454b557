/**
 * The data flywheel's Prometheus series on the process registry: what the store writer did with each
 * JetStream message, and the feedback the API accepted. Not the store's own query metrics.
 */
import { Counter, type Registry } from 'prom-client';

export class FlywheelMetrics {
  /** outcome: inserted, duplicate (redelivery or retry), orphaned (completion not stored yet), dead_letter, error. */
  readonly storeWrites: Counter<'stream' | 'outcome'>;
  readonly feedbackAccepted: Counter<'kind' | 'completion'>;

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
  }
}
