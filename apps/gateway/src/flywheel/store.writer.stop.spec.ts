/**
 * StoreWriter.stop() while a stream's loop sits in its backoff pause: a record that failed many times pauses its loop
 * for up to retryMaxMs (30 s), and stop() used to wait that out, past the launcher's 10 s grace (the gateway was then
 * killed). The consumer here is a stand-in for nats.js's consume() iterator: one record, then nothing until stopped.
 */
import type { ConsumerMessages, JsMsg } from 'nats';
import { Registry } from 'prom-client';
import { FlywheelMetrics } from './flywheel.metrics';
import { StoreWriter } from './store.writer';

/** One much-redelivered record, then an open wait that stop() ends, as consume() does. */
function oneRecordThenWait(naked: () => void): ConsumerMessages {
  let stop: () => void = () => undefined;
  const stopped = new Promise<void>((r) => (stop = r));
  const msg = {
    data: new TextEncoder().encode('{}'),
    subject: 'flywheel.completions.x',
    info: { streamSequence: 1, redeliveryCount: 20 },
    nak: naked,
  } as unknown as JsMsg;
  return {
    stop,
    async *[Symbol.asyncIterator]() {
      yield msg;
      await stopped;
    },
  } as unknown as ConsumerMessages;
}

it('ends a backoff pause at stop(), instead of waiting out retryMaxMs', async () => {
  const down = {
    get: () => {
      throw new Error('the store is not open');
    },
  };
  const writer = new StoreWriter(down, new FlywheelMetrics(new Registry()), 30_000);
  let naked!: () => void;
  const nakedOnce = new Promise<void>((r) => (naked = r));
  const messages = oneRecordThenWait(() => naked());
  // As start() does once its consumers exist.
  const internals = writer as unknown as { running: ConsumerMessages[]; loops: Promise<void>[]; loop(stream: string, m: ConsumerMessages): Promise<void> };
  internals.running.push(messages);
  internals.loops.push(internals.loop('COMPLETIONS', messages));
  await nakedOnce; // the record failed; its loop now pauses min(30 s, 200 ms × 2^19)
  const t0 = performance.now();
  await writer.stop();
  expect(performance.now() - t0).toBeLessThan(1_000);
});
