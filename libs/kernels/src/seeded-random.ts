/**
 * The seeded uniform generators every reproducible thing in Flywheel draws from: xorshift32 (training data order,
 * reference and benchmark weights), mulberry32 (LoRA initialisation, the moderation classifier's shuffle), and the
 * Fisher–Yates shuffle over either. Pure TypeScript, no addon. Not the sampler's per-request Xoshiro128
 * (libs/model engine) nor a resumable training RNG (@flywheel/train's Rng builds on Xorshift32).
 */

/** xorshift32 (13, 17, 5) with its uint32 state visible, so a training state can save and check it. */
export class Xorshift32 {
  /** Never 0 (0 is the generator's fixed point): a seed that is 0 mod 2^32 starts at 0x9e3779b9. */
  state: number;

  constructor(seed: number) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }

  /** The next state, a uint32 in [1, 2^32). */
  nextUint32(): number {
    let s = this.state;
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    this.state = s >>> 0;
    return this.state;
  }

  /** Uniform in [0, 1): the next state / 2^32. */
  next(): number {
    return this.nextUint32() / 4294967296;
  }
}

/** xorshift32 as a function: uniform [0, 1) draws from `seed`. */
export function xorshift32(seed: number): () => number {
  const g = new Xorshift32(seed);
  return () => g.next();
}

/** mulberry32: uniform [0, 1) draws from a 32-bit seed (0 is a valid seed). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher–Yates from the end: a[i] swaps with a[floor(next() * (i + 1))]. Shuffles `a` in place and returns it. */
export function shuffleInPlace<T>(a: T[], next: () => number): T[] {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}
