/**
 * Stream multiplexing end to end on a private nats-server: a responder answering the way Nest does (its Observable's
 * values as replies, then the final packet on the next tick) through a real StreamMux, and callers reading with
 * MeshClient.stream({ mux: true }). Concurrent streams get every frame in order with the final packet after them,
 * and share one message per tick; a failing stream's error follows its frames; an abort leaves the other streams
 * alone; an entry batch over the server's max_payload is split; a malformed mux message fails the open streams
 * instead of leaving them to time out; a muxed request no one listens to fails `unavailable` at once; a responder
 * that knows nothing of the mux still serves a muxed caller; and MeshClient.request, which waits on the same
 * subscription, gets its answer, or `timeout` after its time.
 */
import { connect, type Msg, type NatsConnection, type Subscription } from 'nats';
import { STREAM_MUX_HEADER } from '@flywheel/contracts';
import { MeshError, StreamMux, type MeshClient } from '@flywheel/mesh';
import { codec, echo, sleep, startMeshPair, type MeshPair } from './support/mesh-pair';

jest.setTimeout(30_000);


let pair: MeshPair;
let responder: NatsConnection;
let spy: NatsConnection;
let mesh: MeshClient;
const mux = new StreamMux();
/** Every message on a reply subject the spy saw: muxed ones are JSON arrays. */
let seen: { subject: string; bytes: number; entries: number | null }[] = [];

beforeAll(async () => {
  pair = await startMeshPair();
  ({ responder, mesh } = pair);
  spy = await connect({ servers: pair.url });
  mux.attach(() => responder);
  spy.subscribe('_INBOX.>', {
    callback: (_e, m) => {
      const entries = m.data[0] === 0x5b ? (codec.decode(m.data) as unknown[]).length : null;
      seen.push({ subject: m.subject, bytes: m.data.length, entries });
    },
  });
  await spy.flush();
});

afterAll(async () => {
  await spy?.close();
  await pair?.stop();
});

beforeEach(() => {
  seen = [];
});

/** One clock for every stream of a test, as an engine step is for the policy's requests. */
class Ticker {
  private waiters: Array<() => void> = [];
  private readonly timer = setInterval(() => {
    const w = this.waiters;
    this.waiters = [];
    for (const release of w) release();
  }, 3);
  next(): Promise<void> {
    return new Promise((r) => this.waiters.push(r));
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

/** A responder's frames for one request: `count` of them, `<text>:<i>`, one per tick of `ticker`. */
const ticking = (ticker: Ticker, count: number) =>
  async function* ({ text }: { text: string }) {
    for (let i = 0; i < count; i++) {
      await ticker.next();
      yield { echo: `${text}:${i}` };
    }
  };

/**
 * Answers `subject` as a Nest @MessagePattern handler would, through the mux when the request asks for it: each
 * value of `frames(request)` is a reply, then `isDisposed` on the next tick (Nest's `send`), or the error.
 */
function serve(subject: string, frames: (data: { text: string }) => AsyncIterable<{ echo: string }>, onRequest?: (msg: Msg) => void): Subscription {
  return responder.subscribe(subject, {
    callback: (_err, msg) => {
      onRequest?.(msg);
      const { id, data } = codec.decode(msg.data) as { id: string; data: { text: string } };
      const respond = (packet: object) => process.nextTick(() => msg.respond(codec.encode({ id, ...packet })));
      mux.reply(frames(data), mux.routeOf(msg.headers)).subscribe({
        next: (response) => respond({ response }),
        error: (err: Error) => respond({ err: { code: 'internal', message: err.message }, isDisposed: true }),
        complete: () => respond({ isDisposed: true }),
      });
    },
  });
}

async function drain(subject: string, text: string, opts: { signal?: AbortSignal; mux?: boolean } = {}) {
  const got: string[] = [];
  try {
    for await (const f of mesh.stream(subject, { text }, echo, { firstReplyTimeoutMs: 5_000, idleTimeoutMs: 5_000, mux: true, ...opts })) got.push(f.echo);
    return { got, err: null };
  } catch (err) {
    return { got, err: err as MeshError };
  }
}

it('gives concurrent streams every frame in order, in one message per tick, with the final packet after them', async () => {
  const ticker = new Ticker();
  const sub = serve('mux.steps', ticking(ticker, 30));
  await responder.flush();
  const results = await Promise.all(['a', 'b', 'c', 'd', 'e', 'f'].map((s) => drain('mux.steps', s)));
  ticker.stop();
  sub.unsubscribe();
  results.forEach(({ got, err }, k) => {
    expect(err).toBeNull();
    expect(got).toEqual(Array.from({ length: 30 }, (_, i) => `${'abcdef'[k]}:${i}`));
  });
  await spy.flush();
  const muxed = seen.filter((m) => m.entries !== null);
  // Every frame went through the mux; the inbox carried the six final packets only.
  expect(muxed.reduce((a, m) => a + m.entries!, 0)).toBe(180);
  expect(seen.filter((m) => m.entries === null)).toHaveLength(6);
  // Six streams on one clock share their messages: about one per tick, far fewer than frames.
  expect(muxed.length).toBeLessThan(180 / 3);
  expect(new Set(muxed.map((m) => m.subject)).size).toBe(1);
});

it("sends a failing stream's frames first, then its error; the other streams are untouched", async () => {
  const sub = serve('mux.fails', async function* ({ text }) {
    for (let i = 0; i < 5; i++) {
      await sleep(1);
      yield { echo: `${text}:${i}` };
    }
    if (text === 'bad') throw new Error('the engine failed');
  });
  await responder.flush();
  const [bad, good] = await Promise.all([drain('mux.fails', 'bad'), drain('mux.fails', 'good')]);
  sub.unsubscribe();
  expect(bad.got).toEqual(['bad:0', 'bad:1', 'bad:2', 'bad:3', 'bad:4']);
  expect(bad.err).toBeInstanceOf(MeshError);
  expect(bad.err!.message).toBe('the engine failed');
  expect(good).toEqual({ got: ['good:0', 'good:1', 'good:2', 'good:3', 'good:4'], err: null });
});

it('ends an aborted stream at once and keeps delivering to the others on the same mux', async () => {
  const ticker = new Ticker();
  const sub = serve('mux.abort', ticking(ticker, 40));
  await responder.flush();
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 40);
  const [aborted, ...rest] = await Promise.all([drain('mux.abort', 'x', { signal: ac.signal }), drain('mux.abort', 'y'), drain('mux.abort', 'z')]);
  ticker.stop();
  sub.unsubscribe();
  expect(aborted.err!.code).toBe('cancelled');
  expect(aborted.got.length).toBeLessThan(40);
  for (const [k, r] of rest.entries()) expect(r).toEqual({ got: Array.from({ length: 40 }, (_, i) => `${'yz'[k]}:${i}`), err: null });
});

it("splits one tick's entries over messages within the server's max_payload", async () => {
  const big = 'x'.repeat(300_000);
  const sub = serve('mux.big', async function* ({ text }) {
    yield { echo: `${text}:${big}` };
    yield { echo: `${text}:end` };
  });
  await responder.flush();
  const results = await Promise.all(['p', 'q', 'r', 's', 't', 'u'].map((s) => drain('mux.big', s)));
  sub.unsubscribe();
  results.forEach(({ got, err }, k) => {
    expect(err).toBeNull();
    expect(got).toEqual([`${'pqrstu'[k]}:${big}`, `${'pqrstu'[k]}:end`]);
  });
  await spy.flush();
  const muxed = seen.filter((m) => m.entries !== null);
  expect(muxed.length).toBeGreaterThan(1);
  for (const m of muxed) expect(m.bytes).toBeLessThanOrEqual(responder.info!.max_payload);
});

it('fails the open streams with internal when a mux message is malformed, instead of leaving them to time out', async () => {
  let route = '';
  const ticker = new Ticker();
  const sub = serve('mux.garbage', ticking(ticker, 1000), (msg) => (route = msg.headers?.get(STREAM_MUX_HEADER) ?? ''));
  await responder.flush();
  const pending = drain('mux.garbage', 'g');
  setTimeout(() => responder.publish(route.split(' ')[0]!, new TextEncoder().encode('{"not":"a list"}')), 50);
  const t0 = performance.now();
  const { got, err } = await pending;
  ticker.stop();
  sub.unsubscribe();
  expect(err!.code).toBe('internal');
  expect(got.length).toBeGreaterThan(0);
  expect(performance.now() - t0).toBeLessThan(2_000);
});

it('serves a muxed caller from a responder that knows nothing of the mux', async () => {
  const sub = responder.subscribe('mux.legacy', {
    callback: (_err, msg) => {
      const { id } = codec.decode(msg.data) as { id: string };
      for (let i = 0; i < 3; i++) msg.respond(codec.encode({ id, response: { echo: String(i) } }));
      msg.respond(codec.encode({ id, isDisposed: true }));
    },
  });
  await responder.flush();
  expect(await drain('mux.legacy', 'l')).toEqual({ got: ['0', '1', '2'], err: null });
  sub.unsubscribe();
});

it('fails a muxed request no one listens to with unavailable at once (no subscription of its own to wait on)', async () => {
  const t0 = performance.now();
  const { got, err } = await drain('mux.nobody', 'n');
  expect(got).toEqual([]);
  expect(err!.code).toBe('unavailable');
  expect(performance.now() - t0).toBeLessThan(1_000);
});

it('answers MeshClient.request through the same subscription, and times it out when no answer comes', async () => {
  const answering = responder.subscribe('mux.request', {
    callback: (_err, msg) => {
      const { id, data } = codec.decode(msg.data) as { id: string; data: { text: string } };
      msg.respond(codec.encode({ id, response: { echo: data.text.toUpperCase() }, isDisposed: true }));
    },
  });
  const silent = responder.subscribe('mux.request-silent', { callback: () => undefined });
  await responder.flush();
  const answers = await Promise.all(['a', 'b', 'c'].map((text) => mesh.request('mux.request', { text }, echo, { timeoutMs: 2_000 })));
  expect(answers).toEqual([{ echo: 'A' }, { echo: 'B' }, { echo: 'C' }]);
  const t0 = performance.now();
  await expect(mesh.request('mux.request-silent', { text: 'x' }, echo, { timeoutMs: 300 })).rejects.toMatchObject({ code: 'timeout' });
  expect(performance.now() - t0).toBeGreaterThanOrEqual(290);
  answering.unsubscribe();
  silent.unsubscribe();
});
