/**
 * The data flywheel's backlog gauges, refreshed on a timer (FLYWHEEL_BACKLOG_METRICS_MS): feedback waiting for
 * review (the admin inbox's pending count) and, per stream, what the store writer's durable consumer has not
 * stored yet (JetStream num_pending + num_ack_pending). A read that fails keeps the gauge's last value. Not the
 * per-message counters (flywheel.metrics.ts) nor the writer itself (store.writer.ts).
 */
import { Logger } from '@nestjs/common';
import type { ConsumerInfo, NatsConnection } from 'nats';
import { STREAMS } from '@flywheel/contracts';
import { countPendingFeedback } from '@flywheel/store';
import type { FlywheelMetrics } from './flywheel.metrics';
import { STORE_WRITER_DURABLE, type StreamName, type WriterStore } from './store.writer';

/** The store writer's consumer on one stream as JetStream reports it; throws while unreachable or not created yet. */
export type WriterConsumerInfo = (stream: StreamName) => Promise<Pick<ConsumerInfo, 'num_pending' | 'num_ack_pending'>>;

/** WriterConsumerInfo over the gateway's NATS connection. */
export function writerConsumerInfoOn(mesh: { connection: NatsConnection | null }): WriterConsumerInfo {
  return async (stream) => {
    const nc = mesh.connection;
    if (!nc || nc.isClosed()) throw new Error('not connected to NATS');
    const jsm = await nc.jetstreamManager();
    return jsm.consumers.info(stream, STORE_WRITER_DURABLE);
  };
}

const WRITER_STREAMS: readonly StreamName[] = [STREAMS.completions.name, STREAMS.feedback.name];

export class FlywheelBacklog {
  private readonly logger = new Logger('FlywheelBacklog');
  private timer: NodeJS.Timeout | null = null;
  private refreshing: Promise<void> | null = null;
  /** Sources whose last read failed: logged when they start and stop failing, not every period between. */
  private readonly failing = new Set<string>();

  constructor(
    private readonly store: WriterStore,
    private readonly consumerInfo: WriterConsumerInfo,
    private readonly metrics: FlywheelMetrics,
    private readonly everyMs: number,
  ) {}

  /** The first read is one period after boot, once the store and the writer's consumers usually exist. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.refresh(), this.everyMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.refreshing;
  }

  /** Reads every gauge once; a call while one runs shares it (a slow database never stacks reads up). */
  refresh(): Promise<void> {
    this.refreshing ??= Promise.all([
      this.read('review backlog', async () => this.metrics.reviewBacklog.set(await countPendingFeedback(this.store.get().db))),
      ...WRITER_STREAMS.map((stream) =>
        this.read(`${stream} store-writer consumer`, async () => {
          const info = await this.consumerInfo(stream);
          this.metrics.consumerPending.set({ stream }, info.num_pending + info.num_ack_pending);
        }),
      ),
    ])
      .then(() => undefined)
      .finally(() => {
        this.refreshing = null;
      });
    return this.refreshing;
  }

  private async read(source: string, update: () => Promise<void>): Promise<void> {
    try {
      await update();
      if (this.failing.delete(source)) this.logger.log(`${source} readable again`);
    } catch (err) {
      if (this.failing.has(source)) return;
      this.failing.add(source);
      this.logger.warn(`${source} not read, its gauge keeps its last value: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}
