/**
 * Hashed n-gram features of a CanonicalText (the "hashing trick"): word unigrams and bigrams, character
 * 2..4-grams over the canonical words, and Han/kana 1..3-grams, each hashed (FNV-1a, signed) into
 * `buckets` slots, log-scaled counts, L2-normalised. Shared by training and inference so both see the
 * same vector. Allocation-free inner loops: the n-gram hashes roll over char codes, no substrings.
 */
import type { CanonicalText } from './text.normalize';

export interface SparseVector {
  /** Bucket indices, ascending, unique. */
  index: Int32Array;
  value: Float32Array;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
/** Salts keep a word unigram, a char n-gram and a CJK n-gram with equal text in different buckets. */
const SALT_WORD = 0x9e3779b1;
const SALT_BIGRAM = 0x85ebca6b;
const SALT_CHAR = 0xc2b2ae35;
const SALT_CJK = 0x27d4eb2f;

function mix(h: number, c: number): number {
  return Math.imul(h ^ c, FNV_PRIME) >>> 0;
}

function hashString(seed: number, s: string): number {
  let h = (FNV_OFFSET ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) h = mix(h, s.charCodeAt(i));
  return h;
}

/** Final avalanche so low bits (the bucket) and the sign bit are well mixed. */
function finalize(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

class Accumulator {
  readonly dense: Float32Array;
  /** 1 where a slot is in `touched`: a bucket whose signed sum cancels to 0 stays listed once (with value 0). */
  private readonly listed: Uint8Array;
  readonly touched: number[] = [];
  constructor(readonly buckets: number) {
    this.dense = new Float32Array(buckets);
    this.listed = new Uint8Array(buckets);
  }
  add(hash: number): void {
    const h = finalize(hash);
    const slot = h & (this.buckets - 1);
    const sign = h & 0x80000000 ? -1 : 1;
    if (this.listed[slot] === 0) this.touched.push(slot), (this.listed[slot] = 1);
    this.dense[slot] += sign;
  }
  take(): SparseVector {
    const slots = new Int32Array(this.touched).sort();
    const value = new Float32Array(slots.length);
    let norm = 0;
    for (let i = 0; i < slots.length; i++) {
      const c = this.dense[slots[i]];
      const v = Math.sign(c) * Math.log1p(Math.abs(c));
      value[i] = v;
      norm += v * v;
      this.dense[slots[i]] = 0;
      this.listed[slots[i]] = 0;
    }
    this.touched.length = 0;
    // A floor on the norm: a two-word text would otherwise get unit-length features as strong as a
    // paragraph's, and its few generic n-grams ("hel", "the") would decide the score alone.
    norm = Math.max(Math.sqrt(norm), MIN_NORM);
    if (norm > 0) for (let i = 0; i < value.length; i++) value[i] /= norm;
    return { index: slots, value };
  }
}

/** About the norm of a 25-character sentence's features. */
const MIN_NORM = 8;

const accumulators = new Map<number, Accumulator>();

export function extractFeatures(text: CanonicalText, buckets: number): SparseVector {
  if (buckets <= 0 || (buckets & (buckets - 1)) !== 0) throw new Error(`buckets must be a power of two (got ${buckets})`);
  let acc = accumulators.get(buckets);
  if (!acc) {
    acc = new Accumulator(buckets);
    accumulators.set(buckets, acc);
  }
  const words = text.tokens;
  let prev = -1;
  for (const w of words) {
    const hw = hashString(SALT_WORD, w.text);
    acc.add(hw);
    if (prev !== -1) acc.add(mix(mix(prev ^ SALT_BIGRAM, 32), hw));
    prev = hw;
  }
  // Character n-grams over " w1 w2 … " (spaces mark word edges, so " ki" differs from "ki").
  let line = ' ';
  for (const w of words) line += w.text + ' ';
  for (let i = 0; i + 2 < line.length; i++) {
    let h = (FNV_OFFSET ^ SALT_CHAR) >>> 0;
    h = mix(h, line.charCodeAt(i));
    for (let n = 2; n <= 4 && i + n <= line.length; n++) {
      h = mix(h, line.charCodeAt(i + n - 1));
      if (n >= 3) acc.add(mix(h, n));
    }
  }
  const { cjk } = text;
  for (let i = 0; i < cjk.length; i++) {
    let h = (FNV_OFFSET ^ SALT_CJK) >>> 0;
    for (let n = 1; n <= 3 && i + n <= cjk.length; n++) {
      h = mix(h, cjk.charCodeAt(i + n - 1));
      acc.add(mix(h, n));
    }
  }
  return acc.take();
}
