/**
 * Which examples a run holds out and which each training step takes: the seeded held-out split, epochs over a
 * permutation of n indices with a new permutation at each epoch's end, and the position (epoch, index, RNG state) a
 * training state keeps so a resumed run takes what the killed one would have. Two ways to permute: one RNG stream reshuffling the previous epoch's order (SFT, DPO, reward model), or
 * each epoch's order seeded by (seed, epoch) alone (PPO's prompts and mini-batches). No I/O here.
 */
import { shuffleInPlace } from '@flywheel/kernels';
import { Xoshiro128 } from '@flywheel/model';
import type { Rng } from './rng';

/** How many of n examples a held-out fraction keeps back: floor(n * fraction), at least one when fraction > 0 and n >= 2. */
export function heldOutCount(n: number, fraction: number): number {
  return n >= 2 && fraction > 0 ? Math.max(1, Math.floor(n * fraction)) : 0;
}

/** Shuffles `items` in place with `rng`; the first heldOutCount of them are held out, the rest trained on. */
export function splitHeldOut<T>(items: T[], fraction: number, rng: Rng): { held: T[]; train: T[] } {
  rng.shuffle(items);
  const n = heldOutCount(items.length, fraction);
  return { held: items.slice(0, n), train: items.slice(n) };
}

/** A permutation of 0..n-1 that depends only on (seed, stream): Fisher–Yates with Xoshiro128(seed, stream). */
export function seededPermutation(n: number, seed: number, stream: number): number[] {
  const rng = new Xoshiro128(seed, stream);
  return shuffleInPlace(Array.from({ length: n }, (_, i) => i), () => rng.nextFloat());
}

/** Where a run stands in its data: what a training state's `rng` and `data` hold. */
export interface DataPosition {
  rng: number[];
  data: { epoch: number; index: number };
}

export class EpochOrder {
  epoch = 0;
  index = 0;
  private order: number[];

  private constructor(
    n: number,
    /** The order of epoch `epoch` (> 0) from the previous one. */
    private readonly reorder: (previous: number[], epoch: number) => number[],
    /** The RNG state a position records (and a restore checks). */
    private readonly rngState: () => number[],
    first: (identity: number[]) => number[],
  ) {
    this.order = first(Array.from({ length: n }, (_, i) => i));
  }

  /** One RNG stream: epoch 0 is a shuffle of 0..n-1, each later epoch a reshuffle of the one before. */
  static reshuffled(rng: Rng, n: number): EpochOrder {
    return new EpochOrder(n, (previous) => rng.shuffle(previous), () => [rng.state], (identity) => rng.shuffle(identity));
  }

  /** Epoch e is seededPermutation(n, seed, e + 1): a position needs no RNG state beyond the seed. */
  static seeded(n: number, seed: number): EpochOrder {
    return new EpochOrder(n, (_, e) => seededPermutation(n, seed, e + 1), () => [seed], () => seededPermutation(n, seed, 1));
  }

  /**
   * Continues at a saved position: replays the epochs' reorders so the order and RNG match the interrupted run.
   * Throws (naming `where`) when the RNG then differs from the saved one: the state belongs to other data.
   */
  restore(saved: DataPosition, where: string): void {
    for (let e = this.epoch + 1; e <= saved.data.epoch; e++) this.order = this.reorder(this.order, e);
    const rng = this.rngState();
    if (rng.some((x, i) => x !== saved.rng[i])) throw new Error(`${where}: training state does not match this data (RNG differs); use a new out dir`);
    this.epoch = saved.data.epoch;
    this.index = saved.data.index;
  }

  /** The next k indices, starting a new epoch whenever one ends (k <= n: no index twice in one call). */
  take(k: number): number[] {
    const out: number[] = [];
    while (out.length < k) {
      if (this.index >= this.order.length) {
        this.epoch++;
        this.index = 0;
        this.order = this.reorder(this.order, this.epoch);
      }
      out.push(this.order[this.index++]);
    }
    return out;
  }

  /** What a training state's `rng` and `data` hold. */
  position(): DataPosition {
    return { rng: this.rngState(), data: { epoch: this.epoch, index: this.index } };
  }
}
