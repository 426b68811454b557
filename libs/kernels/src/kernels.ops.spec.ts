// Every single native kernel against its naive reference (kernels.reference.ts), on awkward shapes, through both
// the AVX2 and the portable paths.
import { nativeInfo, nucleusIds, ops, softmaxWeights, topKIds } from '.';
import {
  bf16Round,
  gatherPages,
  makeRng,
  randomF32,
  refAttendOne,
  refMatmul,
  refRmsnorm,
  refRope,
  refSwiglu,
  relError,
} from './kernels.reference';

const paths: Array<{ name: string; portable: boolean }> = [{ name: 'portable', portable: true }];
if (nativeInfo().avx2Supported) paths.unshift({ name: 'avx2', portable: false });

afterAll(() => ops.setForcePortable(false));

function shuffled(n: number, rng: () => number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

describe.each(paths)('native kernels ($name path)', ({ portable }) => {
  beforeAll(() => {
    expect(ops.setForcePortable(portable)).toBe(portable ? 'portable' : 'avx2');
  });

  const matmulShapes: Array<[number, number, number]> = [
    [1, 1, 1],
    [1, 7, 5],
    [1, 64, 33],
    [2, 13, 17],
    [3, 24, 12],
    [5, 37, 29],
    [7, 100, 3],
    [16, 576, 40],
    [50, 1100, 26],
    [61, 9, 130],
  ];
  it.each(matmulShapes)('matmul f32 T=%i in=%i out=%i matches the triple loop, with bias and accumulation', (T, n, o) => {
    const rng = makeRng(T * 1000 + n * 10 + o);
    const x = randomF32(T * n, rng);
    const w = randomF32(o * n, rng);
    const bias = randomF32(o, rng);
    const init = randomF32(T * o, rng);
    expect(relError(ops.matmul(x, w, { T, in: n, out: o }), refMatmul(x, w, T, n, o))).toBeLessThan(1e-5);
    const ref = refMatmul(x, w, T, n, o, bias).map((v, i) => v + init[i]);
    expect(relError(ops.matmul(x, w, { T, in: n, out: o }, { bias, init }), ref)).toBeLessThan(1e-5);
  });

  it.each(matmulShapes)('matmul bf16 T=%i in=%i out=%i equals f32 math on bf16-rounded weights', (T, n, o) => {
    const rng = makeRng(T * 7 + n * 3 + o);
    const x = randomF32(T * n, rng);
    const w = randomF32(o * n, rng);
    const y = ops.matmul(x, w, { T, in: n, out: o }, { dtype: 'bf16' });
    expect(relError(y, refMatmul(x, bf16Round(w), T, n, o))).toBeLessThan(1e-5);
  });

  it('rmsnorm matches the reference for odd widths', () => {
    const rng = makeRng(3);
    for (const [T, C] of [[1, 1], [1, 576], [5, 37], [19, 8], [20, 100]]) {
      const x = randomF32(T * C, rng, 3);
      const w = randomF32(C, rng, 0.5, 1);
      expect(relError(ops.rmsnorm(x, w, T, C, 1e-5), refRmsnorm(x, w, T, C, 1e-5))).toBeLessThan(1e-5);
    }
  });

  it('rope (rotate_half) matches the reference, with and without Llama-3 scaling', () => {
    const rng = makeRng(4);
    const scaling = { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 };
    for (const [H, D] of [[1, 2], [3, 64], [2, 6], [4, 128]]) {
      const positions = Int32Array.from([0, 1, 7, 33, 500, 4095]);
      const x = randomF32(positions.length * H * D, rng);
      for (const s of [null, scaling]) {
        const y = ops.rope(x, positions, { numHeads: H, headDim: D }, 10000, s);
        expect(relError(y, refRope(x, positions, H, D, 10000, s))).toBeLessThan(2e-5);
      }
    }
  });

  it('rope scaling changes low frequencies only', () => {
    const x = randomF32(64, makeRng(5));
    const pos = Int32Array.from([1000]);
    const scaling = { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 };
    const plain = ops.rope(x, pos, { numHeads: 1, headDim: 64 }, 500000, null);
    const scaled = ops.rope(x, pos, { numHeads: 1, headDim: 64 }, 500000, scaling);
    expect(scaled[0]).toBeCloseTo(plain[0], 5); // highest frequency untouched
    expect(Math.abs(scaled[31] - plain[31])).toBeGreaterThan(1e-4);
  });

  it('swiglu matches silu(gate) * up', () => {
    const rng = makeRng(6);
    for (const [T, I] of [[1, 1], [1, 1536], [9, 37], [17, 100]]) {
      const g = randomF32(T * I, rng, 20);
      const u = randomF32(T * I, rng, 2);
      expect(relError(ops.swiglu(g, u, T, I), refSwiglu(g, u))).toBeLessThan(1e-5);
    }
  });

  it("softmaxWeights (the sampler's exp) is within 2 ulp of Math.exp, masked ids 0, and sums its row", () => {
    const rng = makeRng(31);
    for (const [n, scale, invT] of [[0, 1, 1], [1, 1, 1], [3, 8, 1.25], [4, 8, 1], [5, 30, 0.5], [513, 40, 2], [49152, 12, 1 / 0.8]] as const) {
      const x = randomF32(n, rng, scale);
      if (n > 4) x[1] = x[n - 2] = -Infinity;
      const m = x.reduce((a, b) => Math.max(a, b), -Infinity);
      const w = new Float64Array(n + 3).fill(7);
      const z = softmaxWeights(x, m, invT, w);
      let want = 0;
      let worst = 0;
      let zerosWrong = 0;
      for (let i = 0; i < n; i++) {
        const ref = Math.exp((x[i]! - m) * invT);
        want += ref;
        if (ref === 0) zerosWrong += w[i] === 0 ? 0 : 1;
        else worst = Math.max(worst, Math.abs(w[i]! - ref) / ref);
      }
      expect(worst).toBeLessThanOrEqual(4.5e-16);
      expect(zerosWrong).toBe(0);
      expect(Array.from(w.subarray(n))).toEqual([7, 7, 7]);
      if (n === 0) expect(z).toBe(0);
      else expect(Math.abs(z - want) / want).toBeLessThan(1e-14);
    }
    // Past the polynomial's range: subnormal and zero weights, and NaN, as Math.exp gives them.
    const x = Float32Array.from([0, -700, -720, -744, -746, -1e30, Number.NaN, -0.5]);
    const w = new Float64Array(x.length);
    softmaxWeights(x, 0, 1, w);
    x.forEach((v, i) => {
      const ref = Math.exp(v);
      if (Number.isNaN(ref)) expect(w[i]).toBeNaN();
      else if (ref === 0 || ref < 2.3e-308) expect(Math.abs(w[i]! - ref)).toBeLessThanOrEqual(Number.MIN_VALUE * 2);
      else expect(Math.abs(w[i]! - ref) / ref).toBeLessThanOrEqual(4.5e-16);
    });
    expect(() => softmaxWeights(x, 0, 1, new Float64Array(2))).toThrow(/at least as long/);
    expect(() => softmaxWeights(x, 0, 0, w)).toThrow(/invTemperature > 0/);
  });

  it('embedding gathers rows (f32 exactly, bf16 rounded)', () => {
    const rng = makeRng(7);
    const V = 11;
    const C = 13;
    const table = randomF32(V * C, rng);
    const tokens = Int32Array.from([10, 0, 3, 3, 7]);
    const expected = new Float32Array(tokens.length * C);
    tokens.forEach((t, i) => expected.set(table.subarray(t * C, (t + 1) * C), i * C));
    expect(ops.embedding(table, tokens, C)).toEqual(expected);
    expect(ops.embedding(table, tokens, C, 'bf16')).toEqual(bf16Round(expected));
  });

  describe('paged attention', () => {
    const shapes = [
      { numHeads: 4, numKvHeads: 4, headDim: 8, blockSize: 4 },
      { numHeads: 6, numKvHeads: 2, headDim: 16, blockSize: 5 },
      { numHeads: 9, numKvHeads: 3, headDim: 64, blockSize: 16 },
      { numHeads: 3, numKvHeads: 1, headDim: 12, blockSize: 3 },
      { numHeads: 2, numKvHeads: 1, headDim: 128, blockSize: 7 },
    ];

    it.each(shapes)('prefill chunks starting mid-sequence over shuffled blocks: %o', (shape) => {
      const rng = makeRng(shape.numHeads * 31 + shape.headDim);
      const numBlocks = 31;
      const width = shape.numKvHeads * shape.headDim;
      const kPool = randomF32(numBlocks * shape.blockSize * width, rng, 2);
      const vPool = randomF32(numBlocks * shape.blockSize * width, rng);
      const table = Int32Array.from(shuffled(numBlocks, rng));
      const qd = shape.numHeads * shape.headDim;
      for (const [start, T] of [[0, 1], [0, 9], [5, 1], [7, 13], [shape.blockSize * 3 - 1, 2 * shape.blockSize + 1], [40, 30]]) {
        const q = randomF32(T * qd, rng, 2);
        const out = ops.attentionPrefill(q, kPool, vPool, table, start, shape);
        const k = gatherPages(kPool, table, start + T, shape.blockSize, width);
        const v = gatherPages(vPool, table, start + T, shape.blockSize, width);
        for (let t = 0; t < T; t++) {
          const ref = refAttendOne(q.subarray(t * qd, (t + 1) * qd), k, v, start + t + 1, shape.numHeads, shape.numKvHeads, shape.headDim);
          expect(relError(out.subarray(t * qd, (t + 1) * qd), ref)).toBeLessThan(1e-5);
        }
      }
    });

    it.each(shapes)('batched decode, one query per sequence, sequences of different lengths: %o', (shape) => {
      const rng = makeRng(shape.numKvHeads * 17 + shape.blockSize);
      const numBlocks = 40;
      const maxBlocks = 12;
      const width = shape.numKvHeads * shape.headDim;
      const kPool = randomF32(numBlocks * shape.blockSize * width, rng, 2);
      const vPool = randomF32(numBlocks * shape.blockSize * width, rng);
      const positions = Int32Array.from([0, 1, shape.blockSize - 1, shape.blockSize, 3 * shape.blockSize + 2, maxBlocks * shape.blockSize - 1]);
      const N = positions.length;
      const blockIds = shuffled(numBlocks, rng);
      const tables = new Int32Array(N * maxBlocks).fill(-1);
      for (let i = 0; i < N; i++) {
        const need = Math.floor(positions[i] / shape.blockSize) + 1;
        // Sequences may share blocks (prefix sharing): draw from the shuffled ids with an offset.
        for (let j = 0; j < need; j++) tables[i * maxBlocks + j] = blockIds[(i * 5 + j) % numBlocks];
      }
      const qd = shape.numHeads * shape.headDim;
      const q = randomF32(N * qd, rng, 2);
      const out = ops.attentionDecode(q, kPool, vPool, positions, tables, maxBlocks, shape);
      for (let i = 0; i < N; i++) {
        const n = positions[i] + 1;
        const row = tables.subarray(i * maxBlocks, (i + 1) * maxBlocks);
        const k = gatherPages(kPool, row, n, shape.blockSize, width);
        const v = gatherPages(vPool, row, n, shape.blockSize, width);
        const ref = refAttendOne(q.subarray(i * qd, (i + 1) * qd), k, v, n, shape.numHeads, shape.numKvHeads, shape.headDim);
        expect(relError(out.subarray(i * qd, (i + 1) * qd), ref)).toBeLessThan(1e-5);
      }
    });
  });
});

describe('portable and avx2 paths', () => {
  // Only a CPU with AVX2 has both paths to compare; elsewhere the skip says so in its name.
  const avx2 = nativeInfo().avx2Supported;
  (avx2 ? it : it.skip)(`give the same results on the same inputs${avx2 ? '' : ' (skipped: this CPU has no AVX2)'}`, () => {
    const rng = makeRng(99);
    const T = 7;
    const n = 333;
    const o = 45;
    const x = randomF32(T * n, rng);
    const w = randomF32(o * n, rng);
    const shape = { numHeads: 6, numKvHeads: 2, headDim: 32, blockSize: 16 };
    const pool = randomF32(10 * 16 * 64, rng);
    const table = Int32Array.from([3, 9, 0, 4, 1, 2, 5, 6, 7, 8]);
    const q = randomF32(5 * 192, rng);
    const run = (): Float32Array[] => [
      ops.matmul(x, w, { T, in: n, out: o }),
      ops.matmul(x, w, { T, in: n, out: o }, { dtype: 'bf16' }),
      ops.attentionPrefill(q, pool, pool, table, 60, shape),
    ];
    ops.setForcePortable(false);
    const fast = run();
    ops.setForcePortable(true);
    const portable = run();
    ops.setForcePortable(false);
    fast.forEach((f, i) => expect(relError(f, portable[i])).toBeLessThan(1e-5));
  });
});

// Scalar code with no AVX2 form: one run.
describe("the sampler's candidate selection, against a full sort by (value desc, id asc), NaN as -inf", () => {
  const rank = (v: number) => (Number.isNaN(v) ? -Infinity : v);
  const sortedIds = (x: Float32Array) => Array.from(x.keys()).sort((a, b) => rank(x[b]!) - rank(x[a]!) || a - b);
  // Rows with exact ties (values rounded to a coarse grid), masked ids and a NaN.
  const row = (n: number, seed: number, scale: number, grid: number) => {
    const rng = makeRng(seed);
    const x = Float32Array.from(randomF32(n, rng, scale), (v) => (grid > 0 ? Math.round(v / grid) * grid : v));
    for (let i = 3; i < n; i += 53) x[i] = -Infinity;
    if (n > 10) x[10] = Number.NaN;
    return x;
  };

  it('topKIds: the k best ids in order, for every k up to past the row', () => {
    for (const [n, seed, grid] of [[1, 1, 0], [7, 2, 0.5], [300, 3, 0.25], [300, 4, 0], [49152, 5, 0.01]] as const) {
      const x = row(n, seed, 6, grid);
      const want = sortedIds(x);
      for (const k of [0, 1, 2, 5, 40, 299, 300, 301, 49152, 60000]) {
        const out = new Int32Array(Math.min(k, n) + 2).fill(-7);
        const got = topKIds(x, k, out);
        expect(got).toBe(Math.min(k, n));
        expect(Array.from(out.subarray(0, got))).toEqual(want.slice(0, got));
        expect(Array.from(out.subarray(got))).toEqual([-7, -7]);
      }
    }
    expect(() => topKIds(new Float32Array(4), 3, new Int32Array(2))).toThrow(/out of at least 3/);
    expect(() => topKIds(new Float32Array(4), -1, new Int32Array(2))).toThrow(/integer k >= 0/);
  });

  it('nucleusIds: a prefix of that order holding the target mass, short of the row; every id when the mass falls short', () => {
    for (const [n, seed, scale, grid] of [[5, 6, 3, 0], [3000, 7, 1, 0], [3000, 8, 8, 0.25], [49152, 9, 4, 0], [49152, 10, 2, 0]] as const) {
      const x = row(n, seed, scale, grid);
      const want = sortedIds(x);
      const m = x.reduce((a, b) => (b > a ? b : a), -Infinity);
      const w = new Float64Array(n);
      softmaxWeights(x, m, 1, w);
      // NaN's weight is NaN: as a masked id it weighs nothing.
      if (n > 10) w[10] = 0;
      const z = w.reduce((a, b) => a + b, 0);
      const out = new Int32Array(n);
      for (const p of [1e-6, 0.3, 0.9, 0.95, 0.999]) {
        const got = nucleusIds(x, w, m, z, p, out);
        const ids = Array.from(out.subarray(0, got));
        expect(ids).toEqual(want.slice(0, got));
        expect(ids.reduce((acc, id) => acc + w[id]!, 0)).toBeGreaterThanOrEqual(p * z);
        if (n > 1000) expect(got).toBeLessThan(n);
      }
      const all = nucleusIds(x, w, m, z, 1.0001, out);
      expect(all).toBe(n);
      expect(Array.from(out)).toEqual(want);
    }
    expect(() => nucleusIds(new Float32Array(4), new Float64Array(4), 0, 1, 0.9, new Int32Array(3))).toThrow(/at least as long/);
  });
});
