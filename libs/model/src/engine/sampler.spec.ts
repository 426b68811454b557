/**
 * Sampler math against hand computations and a naive full-sort reference: greedy, seeded determinism,
 * top-k/top-p candidate sets, penalties, logit_bias, logprobs, and vLLM's min_p, repetition_penalty and banned
 * (min_tokens) ids against straightforward implementations. Random logits, no model.
 */
import type { SamplingParams } from './engine.types';
import { applyAllowedMask, applyBiasAndPenalties, applyRepetitionPenalty, candidateDistribution, nucleusCandidates, pickFrom, SequenceSampler, topIndices, Xoshiro128 } from './sampler';

const params = (over: Partial<SamplingParams> = {}): SamplingParams => ({
  temperature: 1,
  topP: 1,
  topK: 0,
  seed: 0,
  presencePenalty: 0,
  frequencyPenalty: 0,
  logitBias: new Map(),
  logprobs: false,
  topLogprobs: 0,
  ...over,
});

function randomLogits(rng: Xoshiro128, V: number, scale: number): Float32Array {
  const x = new Float32Array(V);
  for (let i = 0; i < V; i++) x[i] = (rng.nextFloat() - 0.5) * scale;
  // A few exact ties to exercise the (value desc, id asc) order.
  x[V - 1] = x[0]!;
  return x;
}

/** Naive reference: full sort, top-k, softmax with temperature, top-p (keep while mass before < p), renormalize. */
function referenceDistribution(x: Float32Array, T: number, topK: number, topP: number): { ids: number[]; probs: number[] } {
  let ids = Array.from(x.keys()).sort((a, b) => x[b]! - x[a]! || a - b);
  if (topK > 0) ids = ids.slice(0, topK);
  const m = x[ids[0]!]!;
  let w = ids.map((id) => Math.exp((x[id]! - m) / T));
  let z = w.reduce((a, b) => a + b, 0);
  let probs = w.map((v) => v / z);
  if (topP < 1) {
    let before = 0;
    let keep = 0;
    while (keep < ids.length && (keep === 0 || before < topP)) before += probs[keep++]!;
    ids = ids.slice(0, keep);
    w = w.slice(0, keep);
    z = w.reduce((a, b) => a + b, 0);
    probs = w.map((v) => v / z);
  }
  return { ids, probs };
}

describe('sampler', () => {
  it('greedy picks the argmax, ties to the lowest id, and uses no randomness', () => {
    const s = new SequenceSampler(params({ temperature: 0 }), 1);
    expect(s.sample(Float32Array.from([0.1, 3, -2, 3, 1])).tokenId).toBe(1);
    expect(s.sample(Float32Array.from([5, 5])).tokenId).toBe(0);
  });

  it('same seed ⇒ same tokens; other seeds and other choices (streams) differ', () => {
    const rng = new Xoshiro128(3);
    const rows = Array.from({ length: 200 }, () => randomLogits(rng, 50, 4));
    const run = (seed: number, stream: number): number[] => {
      const s = new SequenceSampler(params({ temperature: 1, seed }), seed, stream);
      return rows.map((r) => s.sample(r).tokenId);
    };
    expect(run(42, 0)).toEqual(run(42, 0));
    expect(run(42, 0)).not.toEqual(run(43, 0));
    expect(run(42, 0)).not.toEqual(run(42, 1));
  });

  it('top-k and top-p keep exactly the naive reference candidates with the same probabilities', () => {
    const rng = new Xoshiro128(11);
    const configs: [number, number, number, number][] = [
      // V, temperature, topK, topP
      [100, 1, 5, 1],
      [100, 0.7, 0, 0.9],
      [100, 1.3, 20, 0.5],
      [3000, 1, 0, 0.95], // flat logits: top-p needs more than the first heap of 64
      [3000, 0.5, 1, 1],
      [64, 1, 64, 0.3],
    ];
    for (const [V, T, k, p] of configs) {
      for (let trial = 0; trial < 5; trial++) {
        const x = randomLogits(rng, V, V > 1000 ? 1 : 8);
        const got = candidateDistribution(x, T, k, p)!;
        const want = referenceDistribution(x, T, k, p);
        expect(Array.from(got.ids)).toEqual(want.ids);
        got.probs.forEach((prob, i) => expect(prob).toBeCloseTo(want.probs[i]!, 10));
        for (let u = 0.01; u < 1; u += 0.07) {
          let acc = 0;
          const refPick = want.ids.find((_, i) => (acc += want.probs[i]!) > u) ?? want.ids[want.ids.length - 1];
          expect(pickFrom(got.ids, got.probs, u)).toBe(refPick);
        }
      }
    }
  });

  it('top-p over a 49k vocabulary with a model-like spread keeps exactly the naive reference nucleus (hundreds to thousands of ids)', () => {
    const rng = new Xoshiro128(23);
    const gauss = () => Math.sqrt(-2 * Math.log(rng.nextFloat() || 1e-12)) * Math.cos(2 * Math.PI * rng.nextFloat());
    for (const [std, T, p] of [[4, 1, 0.9], [3, 1, 0.95], [2, 0.8, 0.9]] as const) {
      const x = Float32Array.from({ length: 49152 }, () => gauss() * std);
      // Masked ids (a grammar, min_tokens) and exact ties.
      for (let i = 0; i < 500; i++) x[i * 97] = -Infinity;
      x[7] = x[8]!;
      const got = candidateDistribution(x, T, 0, p)!;
      const want = referenceDistribution(x, T, 0, p);
      expect(got.ids.length).toBeGreaterThan(100);
      expect(Array.from(got.ids)).toEqual(want.ids);
      got.probs.forEach((prob, i) => expect(prob).toBeCloseTo(want.probs[i]!, 10));
    }
  });

  it('nucleusCandidates returns a prefix of the (value desc, id asc) order that holds the target mass, or every id', () => {
    const rng = new Xoshiro128(29);
    const x = randomLogits(rng, 5000, 10);
    x[3] = -Infinity;
    x[4000] = -Infinity;
    const m = Math.max(...x);
    const w = Float64Array.from(x, (v) => Math.exp(v - m));
    const z = w.reduce((a, b) => a + b, 0);
    const sorted = Array.from(x.keys()).sort((a, b) => x[b]! - x[a]! || a - b);
    for (const share of [0.001, 0.3, 0.9, 0.999]) {
      const ids = Array.from(nucleusCandidates(x, w, m, z, share));
      expect(ids).toEqual(sorted.slice(0, ids.length));
      expect(ids.reduce((n, id) => n + w[id]!, 0)).toBeGreaterThanOrEqual(share * z);
      expect(ids.length).toBeLessThan(sorted.length);
    }
    // More than the whole mass (rounding at p near 1): every id, the -inf ones last.
    const all = Array.from(nucleusCandidates(x, w, m, z, 1.0001));
    expect(all).toEqual(sorted);
    expect(all.slice(-2)).toEqual([3, 4000]);
  });

  it('without top-k/top-p draws the full softmax by inverse CDF in id order (no sort)', () => {
    const rng = new Xoshiro128(5);
    const x = randomLogits(rng, 500, 6);
    const T = 0.8;
    const sampler = new SequenceSampler(params({ temperature: T }), 99, 2);
    const mirror = new Xoshiro128(99, 2);
    const m = Math.max(...x);
    const w = Array.from(x, (v) => Math.exp((v - m) / T));
    const z = w.reduce((a, b) => a + b, 0);
    for (let i = 0; i < 100; i++) {
      const u = mirror.nextFloat() * z;
      let acc = 0;
      const want = w.findIndex((v) => (acc += v) > u);
      expect(sampler.sample(x).tokenId).toBe(want);
    }
  });

  it('topIndices orders by value desc then id asc', () => {
    expect(Array.from(topIndices(Float32Array.from([1, 5, 3, 5, 2]), 3))).toEqual([1, 3, 2]);
  });

  it('applies logit_bias (clamped to ±100) and OpenAI presence/frequency penalties', () => {
    const x = Float32Array.from([1, 2, 3, 4]);
    applyBiasAndPenalties(
      x,
      params({ presencePenalty: 0.5, frequencyPenalty: 0.25, logitBias: new Map([[0, 5], [3, -200]]) }),
      new Map([[1, 2], [2, 1]]),
    );
    // 1+5; 2 - 2*0.25 - 0.5; 3 - 1*0.25 - 0.5; 4 - 100
    expect(Array.from(x)).toEqual([6, 1, 2.25, -96]);
  });

  it('penalizes only tokens it generated itself', () => {
    const s = new SequenceSampler(params({ temperature: 0, frequencyPenalty: 0.8 }), 0);
    const row = Float32Array.from([0, 1, 0.5]);
    // 1 → (1-0.8=0.2 < 0.5) 2 → (0.2 > 0.5-0.8) 1 → (1-1.6=-0.6; 0.5-0.8=-0.3; 0) 0
    expect([0, 1, 2, 3].map(() => s.sample(row).tokenId)).toEqual([1, 2, 1, 0]);
    expect(Array.from(row)).toEqual([0, 1, 0.5]); // input untouched
  });

  it('reports logprobs of the biased, penalized logits before temperature; they sum to one', () => {
    const V = 20;
    const x = randomLogits(new Xoshiro128(8), V, 5);
    const lp = (T: number): { logprob: number; top: { tokenId: number; logprob: number }[]; tokenId: number } => {
      const r = new SequenceSampler(params({ temperature: T, logprobs: true, topLogprobs: 20 }), 1).sample(x);
      return { logprob: r.logprob!, top: r.top!, tokenId: r.tokenId };
    };
    const a = lp(0.3);
    const b = lp(1.7);
    expect(a.top).toEqual(b.top);
    expect(a.top.reduce((s, t) => s + Math.exp(t.logprob), 0)).toBeCloseTo(1, 12);
    expect(a.top.find((t) => t.tokenId === a.tokenId)!.logprob).toBeCloseTo(a.logprob, 12);
    for (let i = 1; i < a.top.length; i++) expect(a.top[i]!.logprob).toBeLessThanOrEqual(a.top[i - 1]!.logprob);

    const hand = new SequenceSampler(params({ temperature: 0, logprobs: true, topLogprobs: 2, logitBias: new Map([[1, Math.log(3)]]) }), 0);
    const r = hand.sample(Float32Array.from([0, 0]));
    expect(r.tokenId).toBe(1);
    expect(r.logprob).toBeCloseTo(Math.log(0.75), 6);
    expect(r.top!.map((t) => t.tokenId)).toEqual([1, 0]);
    expect(r.top![1]!.logprob).toBeCloseTo(Math.log(0.25), 6);
  });

  describe("vLLM's min_p and repetition_penalty against a naive reference", () => {
    /** HF/vLLM repetition penalty, straightforwardly: every seen id once, f32 like the sampler's row. */
    function naivePenalized(x: Float32Array, penalty: number, seen: readonly number[]): Float32Array {
      const out = Float32Array.from(x);
      for (const id of new Set(seen)) out[id] = Math.fround(x[id]! > 0 ? x[id]! / penalty : x[id]! * penalty);
      return out;
    }

    /** softmax(x / T), drop p < minP * max p, renormalize, inverse CDF in id order with u in [0, 1). */
    function naiveMinPDraw(x: Float32Array, T: number, minP: number, u: number): number {
      const m = Math.max(...x);
      const p = Array.from(x, (v) => Math.exp((v - m) / T));
      const z = p.reduce((a, b) => a + b, 0);
      const probs = p.map((v) => v / z);
      const top = Math.max(...probs);
      const kept = probs.map((q) => (q >= minP * top ? q : 0));
      const keptZ = kept.reduce((a, b) => a + b, 0);
      let acc = 0;
      for (let i = 0; i < kept.length; i++) {
        if (kept[i] === 0) continue;
        acc += kept[i]! / keptZ;
        if (acc > u) return i;
      }
      let last = 0;
      kept.forEach((q, i) => {
        if (q > 0) last = i;
      });
      return last;
    }

    it('repetition_penalty divides positive and multiplies negative logits of seen ids only', () => {
      const x = Float32Array.from([2, -2, 3, -1, 0.5]);
      applyRepetitionPenalty(x, 2, new Set([0, 1]), new Map([[1, 3], [2, 1]]));
      expect(Array.from(x)).toEqual([1, -4, 1.5, -1, 0.5]);
      const rng = new Xoshiro128(21);
      for (let trial = 0; trial < 20; trial++) {
        const row = randomLogits(rng, 200, 10);
        const seen = Array.from({ length: 30 }, () => Math.floor(rng.nextFloat() * 200));
        const got = Float32Array.from(row);
        applyRepetitionPenalty(got, 1.3, new Set(seen.slice(0, 15)), new Map(seen.slice(15).map((id) => [id, 1])));
        expect(got).toEqual(naivePenalized(row, 1.3, seen));
      }
    });

    it('greedy with repetition_penalty follows the naive penalized argmax over prompt + output', () => {
      const rng = new Xoshiro128(4);
      const prompt = [3, 7, 7, 11];
      const s = new SequenceSampler(params({ temperature: 0, repetitionPenalty: 1.8 }), 0, 0, prompt);
      const seen = [...prompt];
      for (let step = 0; step < 200; step++) {
        const row = randomLogits(rng, 40, 4);
        const want = naivePenalized(row, 1.8, seen).reduce((best, v, i, a) => (v > a[best]! ? i : best), 0);
        const got = s.sample(row).tokenId;
        expect(got).toBe(want);
        seen.push(got);
      }
    });

    it('seeded draws with repetition_penalty and temperature match the naive reference draw', () => {
      const rng = new Xoshiro128(9);
      const T = 0.9;
      const prompt = [0, 1, 2, 5];
      const sampler = new SequenceSampler(params({ temperature: T, repetitionPenalty: 1.2 }), 17, 1, prompt);
      const mirror = new Xoshiro128(17, 1);
      const seen = [...prompt];
      for (let step = 0; step < 300; step++) {
        const row = randomLogits(rng, 60, 5);
        const want = naiveMinPDraw(naivePenalized(row, 1.2, seen), T, 0, mirror.nextFloat());
        const got = sampler.sample(row).tokenId;
        expect(got).toBe(want);
        seen.push(got);
      }
    });

    it.each([
      [0.05, 1],
      [0.1, 0.7],
      [0.5, 1.5],
      [1, 1],
    ])('min_p %f at temperature %f: same choices as the naive reference with the same seed', (minP, T) => {
      const rng = new Xoshiro128(31);
      const sampler = new SequenceSampler(params({ temperature: T, minP }), 5, 3);
      const mirror = new Xoshiro128(5, 3);
      for (let step = 0; step < 300; step++) {
        const row = randomLogits(rng, 80, 8);
        const want = naiveMinPDraw(row, T, minP, mirror.nextFloat());
        expect(sampler.sample(row).tokenId).toBe(want);
      }
    });

    it('min_p never picks a token below min_p × the top probability, also under top-k and top-p', () => {
      const rng = new Xoshiro128(77);
      const T = 1.2;
      const minP = 0.2;
      const sampler = new SequenceSampler(params({ temperature: T, minP, topK: 50, topP: 0.95 }), 8);
      for (let step = 0; step < 500; step++) {
        const row = randomLogits(rng, 100, 6);
        const m = Math.max(...row);
        const id = sampler.sample(row).tokenId;
        expect(Math.exp((row[id]! - m) / T)).toBeGreaterThanOrEqual(minP * (1 - 1e-6));
      }
    });

    it('min_p 0 is the plain draw', () => {
      const rng = new Xoshiro128(2);
      const rows = Array.from({ length: 100 }, () => randomLogits(rng, 50, 4));
      const a = new SequenceSampler(params({ minP: 0 }), 6);
      const b = new SequenceSampler(params(), 6);
      expect(rows.map((r) => a.sample(r).tokenId)).toEqual(rows.map((r) => b.sample(r).tokenId));
    });
  });

  it('never picks a banned id (min_tokens masking) and reports it with logprob -inf', () => {
    const row = Float32Array.from([5, 0, 4.9, -1]);
    const greedy = new SequenceSampler(params({ temperature: 0, logprobs: true, topLogprobs: 4 }), 0);
    const r = greedy.sample(row, [0]);
    expect(r.tokenId).toBe(2);
    expect(r.top!.find((t) => t.tokenId === 0)!.logprob).toBe(-Infinity);
    const drawn = new SequenceSampler(params({ temperature: 1.5 }), 3);
    for (let i = 0; i < 200; i++) expect([0, 2]).not.toContain(drawn.sample(row, [0, 2]).tokenId);
  });
});

describe('allowed-token mask (structured outputs)', () => {
  const maskOf = (ids: number[], V: number): Int32Array => {
    const m = new Int32Array(Math.ceil(V / 32));
    for (const id of ids) m[id >> 5]! |= 1 << (id & 31);
    return m;
  };

  it('leaves only the allowed ids, across word boundaries', () => {
    const x = new Float32Array(70).fill(1);
    applyAllowedMask(x, maskOf([0, 31, 32, 69], 70), []);
    const kept = [...x.keys()].filter((i) => x[i] !== -Infinity);
    expect(kept).toEqual([0, 31, 32, 69]);
  });

  it('drops banned ids unless nothing would be left, then the grammar wins', () => {
    const x = new Float32Array(8).fill(0);
    applyAllowedMask(x, maskOf([2, 5], 8), [5]);
    expect([...x.keys()].filter((i) => x[i] !== -Infinity)).toEqual([2]);
    const y = new Float32Array(8).fill(0);
    applyAllowedMask(y, maskOf([5], 8), [5]);
    expect([...y.keys()].filter((i) => y[i] !== -Infinity)).toEqual([5]);
  });

  it('a masked draw never picks a disallowed token, greedy or sampled', () => {
    const logits = Float32Array.from({ length: 64 }, (_, i) => (i === 7 ? 10 : i / 64));
    const allowed = maskOf([3, 40, 41], 64);
    for (const temperature of [0, 1]) {
      const sampler = new SequenceSampler(params({ temperature }), 5);
      for (let i = 0; i < 200; i++) expect([3, 40, 41]).toContain(sampler.sample(logits, [], allowed).tokenId);
    }
  });
});
