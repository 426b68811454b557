// EventStream.batches with and without a FramePacer: unpaced, every wake-up yields what is queued; paced, a request's
// first batch goes at once, events within the interval of the last batch wait for the pacer's tick and go out together
// (in order, none lost), every stream waiting is released by the same tick, a batch after a longer gap (a slow step)
// goes at once, and the stream's end never waits for a tick.
import type { TokenEvent } from './engine.types';
import { EventStream } from './event-stream';
import { FramePacer } from './frame-pacer';

const ev = (choiceIndex: number, id: number, finishReason?: TokenEvent['finishReason']): TokenEvent => ({
  requestId: 'r',
  choiceIndex,
  tokenIds: [id],
  textDelta: ` t${id}`,
  ...(finishReason ? { finishReason } : {}),
  usage: { promptTokens: 1, completionTokens: id },
});

/** Collects batches as token ids, with the time each arrived. */
async function collect(stream: EventStream, pacer?: FramePacer): Promise<Array<{ ids: number[]; at: number }>> {
  const out: Array<{ ids: number[]; at: number }> = [];
  for await (const batch of stream.batches(pacer)) out.push({ ids: batch.flatMap((e) => e.tokenIds), at: performance.now() });
  return out;
}

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('EventStream.batches', () => {
  it('unpaced: yields whatever is queued at each wake-up, in order', async () => {
    const s = new EventStream(() => undefined);
    const got = collect(s);
    s.push(ev(0, 1));
    await tick();
    s.push(ev(0, 2));
    s.push(ev(0, 3));
    await tick();
    s.push(ev(0, 4, 'length'));
    s.end();
    expect((await got).map((b) => b.ids)).toEqual([[1], [2, 3], [4]]);
  });

  it('paced: the first batch goes at once, later events wait for the tick and go together', async () => {
    const pacer = new FramePacer(400);
    const s = new EventStream(() => undefined);
    const started = performance.now();
    const got = collect(s, pacer);
    s.push(ev(0, 1));
    await tick();
    // Three steps' tokens inside one interval: one frame, not three.
    for (const id of [2, 3, 4]) {
      s.push(ev(0, id));
      await tick();
    }
    await new Promise((r) => setTimeout(r, 600));
    s.push(ev(0, 5, 'length'));
    s.end();
    const batches = await got;
    expect(batches.map((b) => b.ids)).toEqual([[1], [2, 3, 4], [5]]);
    expect(batches[0].at - started).toBeLessThan(300);
    // Held for the tick: timers never fire early.
    expect(batches[1].at - batches[0].at).toBeGreaterThanOrEqual(395);
  });

  it('paced: a batch after a gap longer than the interval goes at once', async () => {
    const pacer = new FramePacer(300);
    const s = new EventStream(() => undefined);
    const got = collect(s, pacer);
    s.push(ev(0, 1));
    await new Promise((r) => setTimeout(r, 400));
    const pushed = performance.now();
    s.push(ev(0, 2));
    await new Promise((r) => setTimeout(r, 400));
    s.push(ev(0, 3, 'length'));
    s.end();
    const batches = await got;
    expect(batches.map((b) => b.ids)).toEqual([[1], [2], [3]]);
    // Not held for a tick (which would come 300 ms after the push).
    expect(batches[1].at - pushed).toBeLessThan(150);
  });

  it('paced: the end is sent at once, not at the next tick', async () => {
    const pacer = new FramePacer(60_000);
    const s = new EventStream(() => undefined);
    const got = collect(s, pacer);
    s.push(ev(0, 1));
    await tick();
    s.push(ev(0, 2));
    await tick();
    s.push(ev(1, 3, 'stop'));
    s.end();
    // A wait for the 60 s tick would time this test out.
    expect((await got).map((b) => b.ids)).toEqual([[1], [2, 3]]);
  });

  it('paced: one tick releases every waiting stream together, one that started waiting later too', async () => {
    const pacer = new FramePacer(300);
    const streams = [0, 1, 2].map(() => new EventStream(() => undefined));
    const got = streams.map((s) => collect(s, pacer));
    for (const s of streams) s.push(ev(0, 1));
    await tick();
    // The first stream starts the clock; the others join its tick 150 ms later rather than waiting 300 ms of their own.
    streams[0].push(ev(0, 2));
    await new Promise((r) => setTimeout(r, 150));
    for (const s of streams.slice(1)) s.push(ev(0, 2));
    await new Promise((r) => setTimeout(r, 450));
    for (const s of streams) {
      s.push(ev(0, 3, 'length'));
      s.end();
    }
    const all = await Promise.all(got);
    for (const b of all) expect(b.map((x) => x.ids)).toEqual([[1], [2], [3]]);
    const second = all.map((b) => b[1].at);
    expect(Math.max(...second) - Math.min(...second)).toBeLessThan(75);
  });

  it('a pacer of 0 ms does not pace', () => {
    expect(new FramePacer(0).tick()).toBeNull();
    expect(() => new FramePacer(-1)).toThrow(RangeError);
  });
});
