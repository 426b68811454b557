/**
 * The backlog gauges as Prometheus scrapes them, over a real (embedded) store: flywheel_review_backlog is the
 * count of feedback pending review, flywheel_store_consumer_pending{stream} the store writer's consumer
 * num_pending + num_ack_pending; both refresh on their timer and keep their last value while a source fails.
 */
import { Registry } from 'prom-client';
import { STREAMS } from '@flywheel/contracts';
import { openStore, startEmbeddedPostgres, writeCompletion, writeFeedback, type EmbeddedPostgres, type Store } from '@flywheel/store';
import { completionRecord, feedbackEvent } from '@flywheel/store/testing';
import { FlywheelBacklog, type WriterConsumerInfo } from './flywheel.backlog';
import { FlywheelMetrics } from './flywheel.metrics';

jest.setTimeout(60_000);

/** The value of one series in the registry's exposition text (null when absent). */
async function sample(registry: Registry, series: string): Promise<number | null> {
  const text = await registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? null : Number(line.slice(series.length + 1));
}

describe('FlywheelBacklog', () => {
  let store: Store;
  let embedded: EmbeddedPostgres | null = null;
  let storeDown = false;
  const handle = {
    get: () => {
      if (storeDown) throw new Error('the store is not open');
      return store;
    },
  };
  const consumers = new Map<string, { num_pending: number; num_ack_pending: number }>();
  const consumerInfo: WriterConsumerInfo = async (stream) => {
    const info = consumers.get(stream);
    if (!info) throw new Error(`consumer not found on ${stream}`);
    return info;
  };

  beforeAll(async () => {
    embedded = await startEmbeddedPostgres({ dataDir: null });
    store = await openStore({ url: embedded.url });
  });

  afterAll(async () => {
    await store?.close();
    await embedded?.stop();
  });

  it('exports the pending-review count and each consumer backlog, refreshed on its timer', async () => {
    const registry = new Registry();
    const backlog = new FlywheelBacklog(handle, consumerInfo, new FlywheelMetrics(registry), 20);
    const completionId = 'chatcmpl-backlog000000000000000001';
    await writeCompletion(store.db, completionRecord(completionId));
    const feedback = [feedbackEvent(completionId), feedbackEvent(completionId, { kind: 'rating', value: 4 }), feedbackEvent(completionId, { kind: 'thumbs', value: 'down' })];
    for (const event of feedback) await writeFeedback(store.db, event);
    await store.db.updateTable('feedback').set({ review_status: 'approved' }).where('id', '=', feedback[0]!.id).execute();
    consumers.set(STREAMS.completions.name, { num_pending: 3, num_ack_pending: 1 });

    backlog.start();
    try {
      await waitUntil(async () => (await sample(registry, 'flywheel_review_backlog')) === 2);
      expect(await sample(registry, `flywheel_store_consumer_pending{stream="${STREAMS.completions.name}"}`)).toBe(4);
      // the FEEDBACK consumer does not exist yet: no series rather than a made-up 0
      expect(await sample(registry, `flywheel_store_consumer_pending{stream="${STREAMS.feedback.name}"}`)).toBeNull();

      consumers.set(STREAMS.feedback.name, { num_pending: 0, num_ack_pending: 7 });
      await store.db.updateTable('feedback').set({ review_status: 'rejected' }).where('id', '=', feedback[1]!.id).execute();
      await waitUntil(async () => (await sample(registry, 'flywheel_review_backlog')) === 1);
      await waitUntil(async () => (await sample(registry, `flywheel_store_consumer_pending{stream="${STREAMS.feedback.name}"}`)) === 7);
    } finally {
      await backlog.stop();
    }
  });

  it('keeps the last values while the store and JetStream cannot be read', async () => {
    const registry = new Registry();
    const backlog = new FlywheelBacklog(handle, consumerInfo, new FlywheelMetrics(registry), 60_000);
    consumers.set(STREAMS.completions.name, { num_pending: 5, num_ack_pending: 0 });
    await backlog.refresh();
    const pending = await sample(registry, 'flywheel_review_backlog');
    expect(pending).toBeGreaterThan(0);

    storeDown = true;
    consumers.clear();
    await backlog.refresh();
    storeDown = false;
    expect(await sample(registry, 'flywheel_review_backlog')).toBe(pending);
    expect(await sample(registry, `flywheel_store_consumer_pending{stream="${STREAMS.completions.name}"}`)).toBe(5);
  });
});

async function waitUntil(probe: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
