/**
 * Scheduler policy without a model: chunked prefill under the token budget, decodes before prefill, the
 * StepBatch layout, preemption by recompute, cancellation, maxSeqs.
 */
import { BlockManager } from './block-manager';
import { Scheduler, type SchedulableSequence, type ScheduledStep } from './scheduler';

class Seq implements SchedulableSequence {
  numComputed = 0;
  readonly seats = 1;
  readonly tokens: number[];
  constructor(
    readonly id: number,
    promptLength: number,
  ) {
    this.tokens = Array.from({ length: promptLength }, (_, i) => 100 * id + i);
  }
}

/** What the engine does after a forward: commit, then every sampled sequence appends one token. */
function finishStep(s: Scheduler<Seq>, step: ScheduledStep<Seq>): void {
  s.commit(step);
  for (const c of step.sampledChunks) c.seq.tokens.push(7);
}

function setup(numBlocks: number, blockSize: number, maxBatchTokens: number, maxSeqs = 8) {
  const bm = new BlockManager({ numBlocks, blockSize, enablePrefixCaching: false });
  return { bm, s: new Scheduler<Seq>(bm, { maxBatchTokens, maxSeqs }) };
}

describe('Scheduler', () => {
  it('splits a long prompt into chunks within the token budget and samples only after the last chunk', () => {
    const { s } = setup(16, 4, 8);
    const a = new Seq(1, 20);
    s.add(a);
    const counts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const step = s.schedule()!;
      expect(step.batch.tokens.length).toBeLessThanOrEqual(8);
      expect(Array.from(step.batch.positions)).toEqual(Array.from({ length: step.chunks[0]!.count }, (_, k) => step.chunks[0]!.start + k));
      counts.push(step.chunks[0]!.count);
      expect(step.batch.logitRows.length).toBe(i === 2 ? 1 : 0);
      finishStep(s, step);
    }
    expect(counts).toEqual([8, 8, 4]);
    expect(a.numComputed).toBe(20);
    expect(a.tokens).toHaveLength(21);
  });

  it('schedules every decode before any prefill, and new prompts only with the budget left', () => {
    const { s } = setup(32, 4, 8);
    const a = new Seq(1, 3);
    s.add(a);
    finishStep(s, s.schedule()!); // a decodes from now on
    const b = new Seq(2, 30); // long prompt: stays in prefill for several steps
    s.add(b);
    let step = s.schedule()!;
    expect(step.chunks.map((c) => [c.seq.id, c.count])).toEqual([[1, 1], [2, 7]]);
    finishStep(s, step);
    const c = new Seq(3, 2);
    s.add(c);
    // b (running, mid-prefill, admitted earlier) still comes after a's decode; c waits for budget.
    step = s.schedule()!;
    expect(step.chunks.map((ch) => [ch.seq.id, ch.count])).toEqual([[1, 1], [2, 7]]);
    expect(step.batch.logitRows.length).toBe(1);
    expect(Array.from(step.batch.logitRows)).toEqual([0]);
    expect(s.waiting).toEqual([c]);
  });

  it('lays out the batch as the StepBatch contract says (block tables padded with -1)', () => {
    const { s, bm } = setup(8, 4, 64);
    const a = new Seq(1, 9);
    const b = new Seq(2, 2);
    s.add(a);
    s.add(b);
    const step = s.schedule()!;
    const { batch } = step;
    expect(batch.maxBlocksPerSeq).toBe(3);
    expect(Array.from(batch.blockTables)).toEqual([...bm.blockTable(1), ...bm.blockTable(2), -1, -1]);
    expect(Array.from(batch.seqIndex)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    expect(Array.from(batch.tokens)).toEqual([...a.tokens, ...b.tokens]);
    expect(Array.from(batch.logitRows)).toEqual([8, 10]);
  });

  it('preempts the newest sequence when blocks run out, then recomputes it with its generated tokens', () => {
    const { s, bm } = setup(4, 4, 64);
    const a = new Seq(1, 6);
    const b = new Seq(2, 6);
    s.add(a);
    s.add(b);
    finishStep(s, s.schedule()!); // both prefilled: 2 blocks each, pool empty
    finishStep(s, s.schedule()!); // positions 6
    finishStep(s, s.schedule()!); // positions 7: blocks full
    expect(bm.numFreeBlocks).toBe(0);
    const step = s.schedule()!; // a's position 8 needs a block: b is newest ⇒ preempted
    expect(step.preempted).toEqual([b]);
    expect(step.chunks.map((c) => c.seq.id)).toEqual([1]);
    expect(s.waiting).toEqual([b]);
    expect(b.numComputed).toBe(0);
    expect(s.preemptions).toBe(1);
    finishStep(s, step);
    bm.checkInvariants();

    s.remove(a); // a finishes: b comes back and recomputes prompt + generated tokens in one chunk
    expect(bm.numFreeBlocks).toBe(4);
    const again = s.schedule()!;
    expect(again.chunks).toHaveLength(1);
    expect(again.chunks[0]).toMatchObject({ seq: b, start: 0, count: 9, sampled: true });
    expect(Array.from(again.batch.tokens)).toEqual(b.tokens);
  });

  it('preempts the sequence itself when it is the newest, and never admits new prompts in that step', () => {
    const { s } = setup(3, 4, 64);
    const a = new Seq(1, 4);
    const b = new Seq(2, 8);
    s.add(a);
    s.add(b);
    finishStep(s, s.schedule()!); // a: 1 block, b: 2 blocks, pool empty
    const step = s.schedule()!;
    // a's decode needs a block: b (newest) goes; b's own decode is then not scheduled.
    expect(step.preempted).toEqual([b]);
    expect(step.chunks.map((c) => c.seq.id)).toEqual([1]);
  });

  it('frees a cancelled sequence’s blocks at once and drops it from the queues', () => {
    const { s, bm } = setup(8, 4, 64);
    const a = new Seq(1, 10);
    const b = new Seq(2, 10);
    s.add(a);
    s.add(b);
    finishStep(s, s.schedule()!);
    expect(bm.numFreeBlocks).toBe(2);
    s.remove(a);
    expect(bm.numFreeBlocks).toBe(5);
    expect(s.running).toEqual([b]);
    s.remove(b);
    expect(bm.numFreeBlocks).toBe(8);
    expect(s.hasWork()).toBe(false);
    bm.checkInvariants();
  });

  it('admits no more than maxSeqs running sequences', () => {
    const { s } = setup(64, 4, 64, 2);
    [1, 2, 3].forEach((id) => s.add(new Seq(id, 3)));
    const step = s.schedule()!;
    expect(step.chunks).toHaveLength(2);
    expect(s.waiting.map((q) => q.id)).toEqual([3]);
  });
});
