/**
 * MeshClient.stream's waits on a private nats-server: replies that arrive faster than the caller reads them all come
 * out in order, the idle clock restarts with every reply (a long stream of prompt replies never times out), a stream
 * whose replies stop ends with `timeout` after its idle time, one no replica picks up after its first-reply time, and
 * an abort ends it at once with `cancelled`, even with replies still queued. NATS restarts are in mesh-reconnect.
 */
import type { NatsConnection, Subscription } from 'nats';
import { MeshError, type MeshClient } from '@flywheel/mesh';
import { codec, echo, sleep, startMeshPair, type MeshPair } from './support/mesh-pair';

jest.setTimeout(30_000);


let pair: MeshPair;
let responder: NatsConnection;
let mesh: MeshClient;

beforeAll(async () => {
  pair = await startMeshPair();
  ({ responder, mesh } = pair);
});

afterAll(async () => {
  await pair?.stop();
});

/**
 * Answers `subject` in Nest's streamed reply format: `frames` replies `gapMs` apart, then the final one, unless
 * `final` is false (a replica that stopped mid-stream).
 */
function serve(subject: string, frames: number, gapMs: number, final = true): Subscription {
  return responder.subscribe(subject, {
    callback: (_err, msg) => {
      const { id } = codec.decode(msg.data) as { id: string };
      void (async () => {
        for (let i = 0; i < frames; i++) {
          if (gapMs > 0) await sleep(gapMs);
          msg.respond(codec.encode({ id, response: { echo: String(i) } }));
        }
        if (final) msg.respond(codec.encode({ id, response: { echo: 'end' }, isDisposed: true }));
      })();
    },
  });
}

async function drain(subject: string, opts: { firstReplyTimeoutMs: number; idleTimeoutMs: number; signal?: AbortSignal }, readDelayMs = 0) {
  const got: string[] = [];
  try {
    for await (const f of mesh.stream(subject, {}, echo, opts)) {
      got.push(f.echo);
      if (readDelayMs > 0) await sleep(readDelayMs);
    }
    return { got, err: null };
  } catch (err) {
    return { got, err: err as MeshError };
  }
}

it('gives every reply in order when they arrive faster than the caller reads', async () => {
  const sub = serve('stream.burst', 200, 0);
  await responder.flush();
  const { got, err } = await drain('stream.burst', { firstReplyTimeoutMs: 5_000, idleTimeoutMs: 5_000 }, 1);
  expect(err).toBeNull();
  expect(got).toEqual([...Array.from({ length: 200 }, (_, i) => String(i)), 'end']);
  sub.unsubscribe();
});

it('restarts the idle clock with every reply: a stream longer than the idle time runs to its end', async () => {
  const sub = serve('stream.steady', 8, 100);
  await responder.flush();
  const t0 = performance.now();
  const { got, err } = await drain('stream.steady', { firstReplyTimeoutMs: 5_000, idleTimeoutMs: 400 });
  expect(err).toBeNull();
  expect(got).toHaveLength(9);
  expect(performance.now() - t0).toBeGreaterThan(400);
  sub.unsubscribe();
});

it('ends with timeout when the replies stop, after the idle time', async () => {
  const sub = serve('stream.stalled', 2, 0, false);
  await responder.flush();
  const t0 = performance.now();
  const { got, err } = await drain('stream.stalled', { firstReplyTimeoutMs: 5_000, idleTimeoutMs: 300 });
  const waited = performance.now() - t0;
  expect(got).toEqual(['0', '1']);
  expect(err).toBeInstanceOf(MeshError);
  expect(err!.code).toBe('timeout');
  expect(waited).toBeGreaterThanOrEqual(290);
  expect(waited).toBeLessThan(3_000);
  sub.unsubscribe();
});

it('ends with timeout when no replica answers, after the first-reply time', async () => {
  // Listening (so the request is delivered) but never answering.
  const sub = responder.subscribe('stream.silent', { callback: () => undefined });
  await responder.flush();
  const t0 = performance.now();
  const { got, err } = await drain('stream.silent', { firstReplyTimeoutMs: 300, idleTimeoutMs: 10_000 });
  expect(got).toEqual([]);
  expect(err!.code).toBe('timeout');
  expect(performance.now() - t0).toBeLessThan(3_000);
  sub.unsubscribe();
});

it('ends at once with cancelled on an abort, replies still queued or not', async () => {
  const sub = serve('stream.abort', 50, 20);
  await responder.flush();
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 150);
  const t0 = performance.now();
  const { got, err } = await drain('stream.abort', { firstReplyTimeoutMs: 5_000, idleTimeoutMs: 5_000, signal: ac.signal });
  expect(err!.code).toBe('cancelled');
  expect(got.length).toBeGreaterThan(0);
  expect(got.length).toBeLessThan(50);
  expect(performance.now() - t0).toBeLessThan(1_000);

  // The caller is slow: replies pile up, and the abort still ends the stream at its next read.
  const sub2 = serve('stream.abort-queued', 100, 0);
  await responder.flush();
  const ac2 = new AbortController();
  setTimeout(() => ac2.abort(), 100);
  const slow = await drain('stream.abort-queued', { firstReplyTimeoutMs: 5_000, idleTimeoutMs: 5_000, signal: ac2.signal }, 30);
  expect(slow.err!.code).toBe('cancelled');
  expect(slow.got.length).toBeLessThan(20);
  sub.unsubscribe();
  sub2.unsubscribe();
});
