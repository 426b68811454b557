/**
 * Per-sequence token sampling from one logits row: banned ids (min_tokens), logit_bias, repetition and
 * presence/frequency penalties, temperature, min-p, top-k, top-p, a seeded PRNG owned by the sequence, and
 * logprobs / top_logprobs. The softmax weights' exps and the candidates' selection (top-k heap, top-p nucleus) run in
 * the native kernels (softmaxWeights, topKIds, nucleusIds); the rest is plain JavaScript over one row. It is not
 * batched math and not the scheduler: the engine calls it once per sequence per step.
 */
import { nucleusIds, softmaxWeights, topKIds } from '@flywheel/kernels';
import type { SamplingParams } from './engine.types';

export const MAX_TOP_LOGPROBS = 20;
const LOGIT_BIAS_LIMIT = 100;
const GREEDY_EPSILON = 1e-5;

const MASK64 = (1n << 64n) - 1n;
// A module-level alias: global lookups in hot loops are slow inside vm contexts (Jest).
const { exp, log } = Math;

function splitMix64(state: bigint): { value: bigint; state: bigint } {
  const next = (state + 0x9e3779b97f4a7c15n) & MASK64;
  let z = next;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return { value: z ^ (z >> 31n), state: next };
}

/**
 * xoshiro128** (Blackman & Vigna): 128-bit state, 32-bit outputs, deterministic across platforms.
 * Seeded through splitmix64 from (seed, stream) so choice i of a seeded request has its own stream.
 */
export class Xoshiro128 {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number, stream = 0) {
    let st = splitMix64(BigInt.asUintN(64, BigInt(Math.trunc(seed)))).value ^ BigInt(stream);
    const a = splitMix64(st);
    st = a.state;
    const b = splitMix64(st);
    this.s0 = Number(a.value & 0xffffffffn) | 0;
    this.s1 = Number(a.value >> 32n) | 0;
    this.s2 = Number(b.value & 0xffffffffn) | 0;
    this.s3 = Number(b.value >> 32n) | 0;
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1). */
  nextFloat(): number {
    return this.nextUint32() / 4294967296;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

export interface TokenChoice {
  tokenId: number;
  logprob: number;
}

export interface SampleResult {
  tokenId: number;
  /** Present when the request asked for logprobs. */
  logprob?: number;
  top?: TokenChoice[];
}

/** Candidates in order (value desc, id asc) with probabilities that sum to 1 over them. */
export interface CandidateDistribution {
  ids: Int32Array;
  probs: Float64Array;
}

let scratch = new Float32Array(0);

/**
 * The sampling state of one sequence: its PRNG, the counts of tokens it generated (for penalties) and the
 * prompt's ids (for the repetition penalty). Preemption keeps the object, so a recomputed sequence
 * continues the same random stream.
 *
 * Order (as vLLM): banned ids → bias → repetition penalty → presence/frequency → [logprobs taken here] →
 * temperature → min-p → top-k → top-p → draw.
 * Logprobs are the log-softmax of the logits after logit_bias and penalties but BEFORE temperature and
 * truncation: they describe the distribution the request asked for, do not depend on temperature (as OpenAI's
 * observed behaviour), and never report -inf for a token top-k/top-p cut away.
 */
export class SequenceSampler {
  private readonly rng: Xoshiro128;
  private readonly counts = new Map<number, number>();
  /** Distinct prompt ids; only kept when the repetition penalty is on. */
  private readonly promptIds: ReadonlySet<number>;

  constructor(
    private readonly params: SamplingParams,
    seed: number,
    stream = 0,
    promptTokenIds: readonly number[] = [],
  ) {
    this.rng = new Xoshiro128(seed, stream);
    this.promptIds = (params.repetitionPenalty ?? 1) !== 1 ? new Set(promptTokenIds) : new Set();
  }

  /**
   * Picks the next token from `logits` (V) and records it as generated. `logits` is not modified.
   * `banned` ids get probability 0 (min_tokens masks the stop ids this way). `allowed` (a grammar's bitmask,
   * bit id&31 of word id>>5) leaves only its ids; when it and `banned` leave nothing, the grammar wins.
   */
  sample(logits: Float32Array, banned: Iterable<number> = [], allowed: Int32Array | null = null): SampleResult {
    const p = this.params;
    if (scratch.length < logits.length) scratch = new Float32Array(logits.length);
    const x = scratch.subarray(0, logits.length);
    x.set(logits);
    if (allowed !== null) applyAllowedMask(x, allowed, banned);
    else for (const id of banned) if (id >= 0 && id < x.length) x[id] = -Infinity;
    applyBiasAndPenalties(x, p, this.counts);
    applyRepetitionPenalty(x, p.repetitionPenalty ?? 1, this.promptIds, this.counts);

    const tokenId = p.temperature < GREEDY_EPSILON ? argmax(x) : this.draw(x);
    this.counts.set(tokenId, (this.counts.get(tokenId) ?? 0) + 1);
    if (!p.logprobs && p.topLogprobs === 0) return { tokenId };
    const logZ = logSumExp(x);
    const result: SampleResult = { tokenId, logprob: x[tokenId]! - logZ };
    if (p.topLogprobs > 0) {
      result.top = Array.from(topIndices(x, Math.min(p.topLogprobs, MAX_TOP_LOGPROBS)), (id) => ({ tokenId: id, logprob: x[id]! - logZ }));
    }
    return result;
  }

  private draw(logits: Float32Array): number {
    const p = this.params;
    const u = this.rng.nextFloat();
    const x = (p.minP ?? 0) > 0 ? applyMinP(logits, p.temperature, p.minP!) : logits;
    const truncated = candidateDistribution(x, p.temperature, p.topK, p.topP);
    if (truncated) return pickFrom(truncated.ids, truncated.probs, u);
    // No truncation: walk the full softmax in id order, no sort (the hot path). The weights come from the native
    // vectorised exp (within 2 ulp of Math.exp, a tenth of its time over a 49k vocabulary), once, kept for the walk.
    const w = weightScratch(x.length);
    const z = softmaxWeights(x, max(x), 1 / p.temperature, w);
    const target = u * z;
    let acc = 0;
    let last = 0;
    for (let i = 0; i < x.length; i++) {
      const wi = w[i]!;
      if (wi === 0) continue;
      acc += wi;
      last = i;
      if (acc > target) return i;
    }
    return last;
  }
}

let weights = new Float64Array(0);

/** exp((x[i] - max) / T) per id, for one draw: reused across calls (one engine thread samples at a time). */
function weightScratch(n: number): Float64Array {
  if (weights.length < n) weights = new Float64Array(n);
  return weights;
}

/** Keeps only the ids set in `allowed`, then drops `banned` unless that would leave no token at all. */
export function applyAllowedMask(x: Float32Array, allowed: Int32Array, banned: Iterable<number>): void {
  for (let w = 0; w * 32 < x.length; w++) {
    const word = allowed[w] ?? 0;
    if (word === -1) continue;
    const end = Math.min(x.length, w * 32 + 32);
    for (let i = w * 32; i < end; i++) if (((word >>> (i & 31)) & 1) === 0) x[i] = -Infinity;
  }
  const bannedAllowed: number[] = [];
  for (const id of banned) if (id >= 0 && id < x.length && x[id] !== -Infinity) bannedAllowed.push(id);
  if (bannedAllowed.length === 0) return;
  const saved = bannedAllowed.map((id) => x[id]!);
  for (const id of bannedAllowed) x[id] = -Infinity;
  if (max(x) === -Infinity) bannedAllowed.forEach((id, i) => (x[id] = saved[i]!));
}

/** OpenAI semantics: logit += bias; logit -= count * frequency + (count > 0) * presence, over generated tokens. */
export function applyBiasAndPenalties(x: Float32Array, p: SamplingParams, counts: ReadonlyMap<number, number>): void {
  for (const [id, bias] of p.logitBias) {
    if (id >= 0 && id < x.length) x[id]! += Math.max(-LOGIT_BIAS_LIMIT, Math.min(LOGIT_BIAS_LIMIT, bias));
  }
  if (p.presencePenalty === 0 && p.frequencyPenalty === 0) return;
  for (const [id, count] of counts) {
    if (id >= 0 && id < x.length) x[id]! -= count * p.frequencyPenalty + (count > 0 ? p.presencePenalty : 0);
  }
}

/**
 * HF/vLLM repetition penalty over every id seen in the prompt or the output: a positive logit is divided
 * by `penalty`, a negative one multiplied (so penalty > 1 always makes a seen token less likely).
 */
export function applyRepetitionPenalty(x: Float32Array, penalty: number, promptIds: ReadonlySet<number>, counts: ReadonlyMap<number, number>): void {
  if (penalty === 1) return;
  const apply = (id: number): void => {
    if (id < 0 || id >= x.length) return;
    const v = x[id]!;
    x[id] = v > 0 ? v / penalty : v * penalty;
  };
  for (const id of promptIds) apply(id);
  for (const id of counts.keys()) if (!promptIds.has(id)) apply(id);
}

let minPScratch = new Float32Array(0);

/**
 * min-p after temperature (vLLM): a token stays when softmax(x / T)[id] >= minP × its max, i.e. when
 * (x[id] - max) / T >= log(minP). Returns a copy with the others at -inf; `x` is not modified.
 */
export function applyMinP(x: Float32Array, temperature: number, minP: number): Float32Array {
  if (minPScratch.length < x.length) minPScratch = new Float32Array(x.length);
  const out = minPScratch.subarray(0, x.length);
  const threshold = max(x) + temperature * log(minP);
  for (let i = 0; i < x.length; i++) out[i] = x[i]! >= threshold ? x[i]! : -Infinity;
  return out;
}

/**
 * The distribution after temperature, top-k and top-p, or null when neither cut applies (then the caller
 * samples the full softmax without sorting). Only the candidates are ever sorted: top-k by a size-k heap,
 * top-p by nucleusCandidates.
 */
export function candidateDistribution(x: Float32Array, temperature: number, topK: number, topP: number): CandidateDistribution | null {
  const V = x.length;
  const useK = topK > 0 && topK < V;
  const useP = topP < 1;
  if (!useK && !useP) return null;
  const m = max(x);
  const invT = 1 / temperature;
  // Each candidate's weight is computed once (top-p reads it twice).
  const w = weightScratch(V);
  let ids: Int32Array;
  let z: number;
  if (useK) {
    ids = topIndices(x, topK);
    z = 0;
    for (const id of ids) z += w[id] = exp((x[id]! - m) * invT);
  } else {
    z = softmaxWeights(x, m, invT, w);
    ids = nucleusCandidates(x, w, m, z, topP);
  }
  let kept = ids.length;
  if (useP) {
    // Keep the smallest prefix whose mass reaches p: a token stays if the mass before it is still < p.
    let before = 0;
    kept = 0;
    for (const id of ids) {
      if (kept > 0 && before >= topP * z) break;
      before += w[id]!;
      kept++;
    }
  }
  // `ids` is this call's own array either way (topIndices and nucleusCandidates return fresh ones): no second copy.
  const outIds = ids.subarray(0, kept);
  const probs = new Float64Array(kept);
  let keptMass = 0;
  for (let i = 0; i < kept; i++) keptMass += probs[i] = w[outIds[i]!]!;
  for (let i = 0; i < kept; i++) probs[i]! /= keptMass;
  return { ids: outIds, probs };
}

let nucleusScratch = new Int32Array(0);

/**
 * A prefix of the ids in (value desc, id asc) order whose weights, summed in that order, reach top-p's p × `total`
 * (the weights' sum): every id the nucleus keeps, and some after it; all ids, sorted, when the prefix falls short
 * (rounding at p near 1). The native kernel keeps only the ids heavy enough to be in the nucleus and sorts them
 * (binned by value first when there are many): about 0.1 ms over a 49k vocabulary for a nucleus of up to a thousand
 * ids, 1.3 ms for 18k. The same binning over every id in JavaScript took 0.5-4 ms; a heap of the top k, grown until
 * it held the mass, 2-43 ms.
 */
export function nucleusCandidates(x: Float32Array, w: Float64Array, m: number, total: number, p: number): Int32Array {
  if (nucleusScratch.length < x.length) nucleusScratch = new Int32Array(x.length);
  return nucleusScratch.slice(0, nucleusIds(x, w, m, total, p, nucleusScratch));
}

/** Inverse-CDF draw over candidates in their given order; u in [0, 1). */
export function pickFrom(ids: Int32Array, probs: Float64Array, u: number): number {
  let acc = 0;
  let last = 0;
  for (let i = 0; i < ids.length; i++) {
    if (probs[i] === 0) continue; // masked (-inf) candidates a top-k heap still returned
    acc += probs[i]!;
    last = i;
    if (acc > u) return ids[i]!;
  }
  return ids[last]!;
}

/** Index of the largest value; ties go to the lowest id. */
export function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

export function logSumExp(x: Float32Array): number {
  const m = max(x);
  return m + log(softmaxWeights(x, m, 1, weightScratch(x.length)));
}

function max(x: Float32Array): number {
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i]! > m) m = x[i]!;
  return m;
}

/** The k best ids ordered by (value desc, id asc), by the native size-k heap: O(V log k), no full sort. */
export function topIndices(x: Float32Array, k: number): Int32Array {
  const out = new Int32Array(Math.max(0, Math.min(k, x.length)));
  topKIds(x, out.length, out);
  return out;
}
