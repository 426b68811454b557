/**
 * Continuous-batching scheduler: picks, for one engine step, a decode token of every running sequence and
 * prefill chunks of waiting prompts under a token budget, reserves their KV slots, preempts by recompute when
 * blocks run out, and flattens the choice into a StepBatch. It never runs the model, samples or detokenizes.
 */
import type { BlockCopy, BlockManager } from './block-manager';
import type { StepBatch } from './engine.types';

/** What the scheduler needs to know of a sequence; the engine's sequences carry more. */
export interface SchedulableSequence {
  readonly id: number;
  /** Prompt then generated tokens; tokens[numComputed..] still need a forward pass. */
  readonly tokens: readonly number[];
  /** Tokens whose KV is in the cache. */
  numComputed: number;
  /** Places in `maxSeqs` it takes: 1, or n for a prompt that forks into n choices after prefill. */
  readonly seats: number;
}

export interface SchedulerLimits {
  /** Token budget of one step (decode tokens + prefill chunk tokens). Must be >= maxSeqs. */
  maxBatchTokens: number;
  /** Running sequences at most. */
  maxSeqs: number;
}

export interface ScheduledChunk<S extends SchedulableSequence> {
  seq: S;
  /** First position computed this step (== seq.numComputed when scheduled). */
  start: number;
  count: number;
  /** The chunk ends at the sequence's last token, so this step yields its next-token logits. */
  sampled: boolean;
}

export interface ScheduledStep<S extends SchedulableSequence> {
  chunks: ScheduledChunk<S>[];
  /** KV block copies (copy-on-write) to run before the forward. */
  copies: BlockCopy[];
  /** Sequences preempted while scheduling this step (already back in the waiting queue). */
  preempted: S[];
  batch: StepBatch;
  /** Chunks with sampled=true in logits-row order. */
  sampledChunks: ScheduledChunk<S>[];
}

interface Reservation {
  count: number;
  copies: BlockCopy[];
}

export class Scheduler<S extends SchedulableSequence> {
  /** FIFO; preempted sequences go back to the front. */
  readonly waiting: S[] = [];
  /** Admission order: the last one is the newest and the first to be preempted. */
  readonly running: S[] = [];
  private preemptionCount = 0;

  constructor(
    private readonly blocks: BlockManager,
    private readonly limits: SchedulerLimits,
  ) {
    if (limits.maxBatchTokens < limits.maxSeqs) throw new RangeError('maxBatchTokens must be >= maxSeqs so every running sequence decodes each step');
  }

  get preemptions(): number {
    return this.preemptionCount;
  }

  add(seq: S): void {
    this.waiting.push(seq);
  }

  /** A forked choice joins the running set right after its parent (same age for preemption). */
  addRunningAfter(parent: S, child: S): void {
    const at = this.running.indexOf(parent);
    this.running.splice(at < 0 ? this.running.length : at + 1, 0, child);
  }

  /** Removes a finished or cancelled sequence and frees its blocks. Call between steps only. */
  remove(seq: S): void {
    const r = this.running.indexOf(seq);
    if (r >= 0) this.running.splice(r, 1);
    const w = this.waiting.indexOf(seq);
    if (w >= 0) this.waiting.splice(w, 1);
    this.blocks.free(seq.id);
  }

  hasWork(): boolean {
    return this.running.length > 0 || this.waiting.length > 0;
  }

  /** Plans the next step, or null when nothing can run (nothing queued, or the head prompt cannot fit yet). */
  schedule(): ScheduledStep<S> | null {
    let budget = this.limits.maxBatchTokens;
    const reserved = new Map<S, Reservation>();
    const preempted: S[] = [];

    const preemptNewest = (): S => {
      const victim = this.running.pop()!;
      const r = reserved.get(victim);
      if (r) {
        budget += r.count;
        reserved.delete(victim);
      }
      this.blocks.free(victim.id);
      victim.numComputed = 0;
      this.waiting.unshift(victim);
      preempted.push(victim);
      this.preemptionCount++;
      return victim;
    };

    // Decodes first, then running prefill chunks: a token for every generating sequence beats new prefill.
    const isDecode = (s: S): boolean => s.tokens.length - s.numComputed === 1;
    const order = [...this.running.filter(isDecode), ...this.running.filter((s) => !isDecode(s))];
    for (const seq of order) {
      if (budget === 0) break;
      if (!this.running.includes(seq)) continue; // preempted earlier in this loop
      const count = Math.min(seq.tokens.length - seq.numComputed, budget);
      for (;;) {
        const copies = this.blocks.reserveSlots(seq.id, seq.numComputed, seq.numComputed + count);
        if (copies) {
          reserved.set(seq, { count, copies });
          budget -= count;
          break;
        }
        if (preemptNewest() === seq) break;
      }
    }

    // Waiting prompts, oldest first, while budget, seats and blocks last. No preemption on their behalf.
    let seats = this.running.reduce((n, s) => n + s.seats, 0);
    while (this.waiting.length > 0 && budget > 0 && preempted.length === 0) {
      const seq = this.waiting[0]!;
      if (seats + seq.seats > this.limits.maxSeqs) break;
      if (!this.blocks.has(seq.id)) seq.numComputed = this.blocks.startSequence(seq.id, seq.tokens);
      const count = Math.min(seq.tokens.length - seq.numComputed, budget);
      const copies = this.blocks.reserveSlots(seq.id, seq.numComputed, seq.numComputed + count);
      if (!copies) {
        // Give the prefix-cache references back so a waiting sequence never pins blocks.
        this.blocks.free(seq.id);
        seq.numComputed = 0;
        break;
      }
      this.waiting.shift();
      this.running.push(seq);
      reserved.set(seq, { count, copies });
      budget -= count;
      seats += seq.seats;
    }

    if (reserved.size === 0) return null;
    const chunks: ScheduledChunk<S>[] = [];
    const copies: BlockCopy[] = [];
    for (const [seq, r] of reserved) {
      chunks.push({ seq, start: seq.numComputed, count: r.count, sampled: seq.numComputed + r.count === seq.tokens.length });
      copies.push(...r.copies);
    }
    const { batch, sampledChunks } = this.buildBatch(chunks);
    return { chunks, copies, preempted, batch, sampledChunks };
  }

  /** After the forward succeeded: the chunks' KV is in the cache, and full blocks become shareable. */
  commit(step: ScheduledStep<S>): void {
    for (const chunk of step.chunks) {
      chunk.seq.numComputed = chunk.start + chunk.count;
      this.blocks.markComputed(chunk.seq.id, chunk.seq.tokens, chunk.seq.numComputed);
      // Sliding-window models: blocks no later query can read go back to the pool.
      this.blocks.releaseOutsideWindow(chunk.seq.id, chunk.seq.numComputed);
    }
  }

  private buildBatch(chunks: ScheduledChunk<S>[]): { batch: StepBatch; sampledChunks: ScheduledChunk<S>[] } {
    const T = chunks.reduce((n, c) => n + c.count, 0);
    const tables = chunks.map((c) => this.blocks.blockTable(c.seq.id));
    const maxBlocksPerSeq = Math.max(1, ...tables.map((t) => t.length));
    const tokens = new Int32Array(T);
    const positions = new Int32Array(T);
    const seqIndex = new Int32Array(T);
    const blockTables = new Int32Array(chunks.length * maxBlocksPerSeq).fill(-1); // (S, maxBlocksPerSeq)
    const logitRows: number[] = [];
    const sampledChunks: ScheduledChunk<S>[] = [];
    let t = 0;
    chunks.forEach((chunk, s) => {
      blockTables.set(tables[s]!, s * maxBlocksPerSeq);
      for (let i = 0; i < chunk.count; i++, t++) {
        tokens[t] = chunk.seq.tokens[chunk.start + i]!;
        positions[t] = chunk.start + i;
        seqIndex[t] = s;
      }
      if (chunk.sampled) {
        logitRows.push(t - 1);
        sampledChunks.push(chunk);
      }
    });
    return { batch: { tokens, positions, seqIndex, blockTables, maxBlocksPerSeq, logitRows: Int32Array.from(logitRows) }, sampledChunks };
  }
}
