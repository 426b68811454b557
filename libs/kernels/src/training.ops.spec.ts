// Finite-difference checks of every training backward: (1) each float64 reference op (training.reference.ts)
// against central differences of its forward, to 1e-6; (2) each native op (forward where it has its own, and
// backward) against that reference, to 1e-5; (3) the native model's gradients of every tensor kind
// (embedding, norms, q/k/v/o and biases, MLP, untied/tied LM head, scalar head, and every Gemma 2/3 op: GeGLU,
// soft-caps, sandwich norms, sliding windows) against central differences of the native f32 loss; plus determinism across thread counts, state round trips and argument checks.
import { expectedWeightShapes } from '.';
import { makeRng, randomWeights } from './kernels.reference';
import * as R from './training.reference';
import {
  createTrainableModel,
  freeTrainableModel,
  getGrads,
  getOptimizerState,
  getWeights,
  optimizerStep,
  scoreStep,
  setOptimizerState,
  setWeights,
  trainableWeightShapes,
  trainingOps,
  trainStep,
  zeroGrad,
  DEFAULT_OPTIMIZER,
  type ModelSpec,
  type TrainBatch,
} from '.';

function rand(n: number, rng: () => number, scale = 1): Float64Array {
  return Float64Array.from({ length: n }, () => (rng() * 2 - 1) * scale);
}

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let mag = 1e-30;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    mag = Math.max(mag, Math.abs(b[i]));
  }
  return diff / mag;
}

describe('float64 reference backward ops vs central differences', () => {
  const rng = makeRng(42);
  const TOL = 1e-6;

  it('matmul (dx, dw, db)', () => {
    const [N, n, o] = [3, 5, 4];
    const x = rand(N * n, rng), w = rand(o * n, rng), b = rand(o, rng), dy = rand(N * o, rng);
    const f = () => R.dot(dy, R.matmulForward(x, w, b, N, n, o));
    const g = R.matmulBackward(dy, x, w, N, n, o);
    expect(relErr(g.dx, R.numericGrad(f, x))).toBeLessThan(TOL);
    expect(relErr(g.dw, R.numericGrad(f, w))).toBeLessThan(TOL);
    expect(relErr(g.db, R.numericGrad(f, b))).toBeLessThan(TOL);
  });

  it('rmsnorm (dx, dweight)', () => {
    const [N, C] = [3, 8];
    const x = rand(N * C, rng), w = rand(C, rng, 0.5).map((v) => v + 1), dy = rand(N * C, rng);
    const f = () => R.dot(dy, R.rmsnormForward(x, w, N, C, 1e-5));
    const g = R.rmsnormBackward(dy, x, w, N, C, 1e-5);
    expect(relErr(g.dx, R.numericGrad(f, x))).toBeLessThan(TOL);
    expect(relErr(g.dw, R.numericGrad(f, w))).toBeLessThan(TOL);
  });

  it('rope', () => {
    const [N, H, D] = [4, 2, 6];
    const pos = [0, 3, 7, 11];
    const inv = [1, 0.1, 0.01];
    const x = rand(N * H * D, rng), dy = rand(N * H * D, rng);
    const f = () => R.dot(dy, R.ropeForward(x, pos, inv, N, H, D));
    expect(relErr(R.ropeBackward(dy, pos, inv, N, H, D), R.numericGrad(f, x))).toBeLessThan(TOL);
  });

  it('causal GQA attention with left and right padding (dq, dk, dv)', () => {
    const s: R.AttnShape = { B: 2, T: 5, H: 4, KVH: 2, D: 3 };
    const mask = [0, 1, 1, 1, 1, 1, 1, 1, 0, 0];
    const q = rand(10 * 12, rng), k = rand(10 * 6, rng), v = rand(10 * 6, rng), dout = rand(10 * 12, rng);
    const f = () => R.dot(dout, R.attentionForward(q, k, v, mask, s).out);
    const { probs } = R.attentionForward(q, k, v, mask, s);
    const g = R.attentionBackward(dout, probs, q, k, v, s);
    expect(relErr(g.dq, R.numericGrad(f, q))).toBeLessThan(TOL);
    expect(relErr(g.dk, R.numericGrad(f, k))).toBeLessThan(TOL);
    expect(relErr(g.dv, R.numericGrad(f, v))).toBeLessThan(TOL);
    // A padded key gets no gradient; a query with no visible key (row 0, slot 0) outputs 0.
    expect(g.dk.slice(0, 6).every((x) => x === 0)).toBe(true);
  });

  it('swiglu (dgate, dup)', () => {
    const g0 = rand(12, rng, 3), u = rand(12, rng), dy = rand(12, rng);
    const f = () => R.dot(dy, R.swigluForward(g0, u));
    const g = R.swigluBackward(dy, g0, u);
    expect(relErr(g.dg, R.numericGrad(f, g0))).toBeLessThan(TOL);
    expect(relErr(g.du, R.numericGrad(f, u))).toBeLessThan(TOL);
  });

  it('weighted cross-entropy (dlogits)', () => {
    const [M, V] = [3, 7];
    const z = rand(M * V, rng, 3);
    const t = [2, 0, 6];
    const w = [0.5, 0, 0.25];
    const f = () => R.crossEntropy(z, t, w, M, V).loss;
    expect(relErr(R.crossEntropy(z, t, w, M, V).dz, R.numericGrad(f, z))).toBeLessThan(TOL);
  });

  it('embedding (scatter-add, repeated ids)', () => {
    const [V, C] = [5, 3];
    const table = rand(V * C, rng), tokens = [1, 4, 1], dy = rand(9, rng);
    const f = () => R.dot(dy, R.embeddingForward(table, tokens, C));
    expect(relErr(R.embeddingBackward(dy, tokens, V, C), R.numericGrad(f, table))).toBeLessThan(TOL);
  });
});

describe('native training ops vs the float64 references (f32 inputs, 1e-5 relative)', () => {
  const rng = makeRng(17);
  const f = (a: Float64Array) => Float32Array.from(a);
  const d = (a: Float32Array) => Float64Array.from(a);
  const TOL = 1e-5;

  it('matmul backward: fast (serving kernel on transposes) and plain-loop reference', () => {
    for (const [N, n, o] of [[3, 5, 4], [37, 70, 50]]) {
      const x = f(rand(N * n, rng)), w = f(rand(o * n, rng)), dy = f(rand(N * o, rng));
      const ref = R.matmulBackward(d(dy), d(x), d(w), N, n, o);
      for (const reference of [false, true]) {
        const g = trainingOps.matmulBackward(dy, x, w, { N, in: n, out: o }, reference);
        expect(relErr(g.dx, ref.dx)).toBeLessThan(TOL);
        expect(relErr(g.dw, ref.dw)).toBeLessThan(TOL);
        expect(relErr(g.db, ref.db)).toBeLessThan(TOL);
      }
    }
  });

  it('rmsnorm forward and backward', () => {
    const [N, C] = [5, 24];
    const x = f(rand(N * C, rng)), w = f(rand(C, rng, 0.3).map((v) => v + 1)), dy = f(rand(N * C, rng));
    const g = trainingOps.rmsnormBackward(dy, x, w, N, C, 1e-5);
    expect(relErr(g.y, R.rmsnormForward(d(x), d(w), N, C, 1e-5))).toBeLessThan(TOL);
    const ref = R.rmsnormBackward(d(dy), d(x), d(w), N, C, 1e-5);
    expect(relErr(g.dx, ref.dx)).toBeLessThan(TOL);
    expect(relErr(g.dw, ref.dw)).toBeLessThan(TOL);
  });

  it('rope backward', () => {
    const [H, D] = [3, 8];
    const pos = Int32Array.from([0, 1, 5, 17]);
    const inv = Float32Array.from([1, 0.1, 0.01, 0.001]);
    const dy = f(rand(4 * H * D, rng));
    expect(relErr(trainingOps.ropeBackward(dy, pos, inv, H, D), R.ropeBackward(d(dy), pos, d(inv), 4, H, D))).toBeLessThan(TOL);
  });

  it('causal GQA attention with padding, forward and backward', () => {
    const s = { B: 2, T: 7, H: 6, KVH: 2, D: 5 };
    const n = s.B * s.T;
    const mask = Int32Array.from([0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]);
    const q = f(rand(n * 30, rng)), k = f(rand(n * 10, rng)), v = f(rand(n * 10, rng)), dout = f(rand(n * 30, rng));
    const g = trainingOps.attention(q, k, v, mask, dout, s);
    const fw = R.attentionForward(d(q), d(k), d(v), mask, s);
    expect(relErr(g.out, fw.out)).toBeLessThan(TOL);
    const ref = R.attentionBackward(d(dout), fw.probs, d(q), d(k), d(v), s);
    expect(relErr(g.dq, ref.dq)).toBeLessThan(TOL);
    expect(relErr(g.dk, ref.dk)).toBeLessThan(TOL);
    expect(relErr(g.dv, ref.dv)).toBeLessThan(TOL);
  });

  it('swiglu forward and backward', () => {
    const g0 = f(rand(40, rng, 4)), u = f(rand(40, rng)), dy = f(rand(40, rng));
    const g = trainingOps.swigluBackward(dy, g0, u);
    expect(relErr(g.y, R.swigluForward(d(g0), d(u)))).toBeLessThan(TOL);
    const ref = R.swigluBackward(d(dy), d(g0), d(u));
    expect(relErr(g.dgate, ref.dg)).toBeLessThan(TOL);
    expect(relErr(g.dup, ref.du)).toBeLessThan(TOL);
  });

  it('weighted cross-entropy and its gradient', () => {
    const [M, V] = [4, 11];
    const z = f(rand(M * V, rng, 5));
    const t = Int32Array.from([3, 0, 10, 7]);
    const w = Float32Array.from([0.25, 0.5, 0, 0.25]);
    const g = trainingOps.crossEntropy(z, t, w, M, V);
    const ref = R.crossEntropy(d(z), t, w, M, V);
    expect(Math.abs(g.loss - ref.loss) / ref.loss).toBeLessThan(TOL);
    expect(relErr(g.dlogits, ref.dz)).toBeLessThan(TOL);
  });

  it('embedding backward (repeated ids accumulate)', () => {
    const tokens = Int32Array.from([2, 0, 2, 5]);
    const dy = f(rand(4 * 3, rng));
    expect(relErr(trainingOps.embeddingBackward(dy, tokens, 6, 3), R.embeddingBackward(d(dy), tokens, 6, 3))).toBeLessThan(TOL);
  });
});

const spec = R.TINY_TRAIN_SPEC;
const GEMMA_KNOBS: Partial<ModelSpec> = {
  attentionBias: false,
  qkNorm: true,
  hiddenAct: 'gelu_tanh',
  embedScale: 4,
  attnScale: 0.3,
  attnSoftcap: 1.5,
  finalSoftcap: 2.5,
  sandwichNorms: true,
  slidingWindow: 3,
  slidingLayers: [0],
  ropeLocalTheta: 500,
};

function batchOf(): { batch: TrainBatch; targets: Int32Array; weights: Float32Array } {
  const B = 2, T = 6;
  const rng = makeRng(9);
  const tokens = Int32Array.from({ length: B * T }, () => Math.floor(rng() * spec.vocabSize));
  const mask = Int32Array.from([1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1]); // right pad, left pad
  const targets = Int32Array.from({ length: B * T }, () => Math.floor(rng() * spec.vocabSize));
  const weights = Float32Array.from([0, 1, 1, 1, 0, 0, 0, 1, 2, 1, 1, 0]);
  return { batch: { B, T, tokens, mask }, targets, weights };
}

describe('native model gradients vs central differences of the native loss', () => {
  // f32 forward: h = 1e-2 keeps rounding noise (~1e-7 of the loss) far below the differences; truncation error
  // is O(h^2). Checked per coordinate with |num - ana| <= 2e-3 + 2e-2 |num|, on 3 coordinates of every tensor.
  async function check(tied: boolean, scalar: boolean, over: Partial<ModelSpec> = {}): Promise<void> {
    const s = { ...spec, tieWordEmbeddings: tied, ...over };
    const weights = randomWeights(s, 77, trainableWeightShapes(s, scalar ? 1 : 0));
    const model = createTrainableModel(s, weights, { numLabels: scalar ? 1 : 0, threads: 2 });
    const { batch, targets, weights: lw } = batchOf();
    const coef = Float32Array.from([1.5, -0.7]);
    const loss = async (): Promise<number> => {
      if (scalar) {
        const sc = await scoreStep(model, batch);
        return coef[0] * sc[0] + coef[1] * sc[1];
      }
      return (await trainStep(model, batch, { targets, weights: lw })).loss;
    };
    try {
      if (scalar) await scoreStep(model, batch, coef);
      else await trainStep(model, batch, { targets, weights: lw });
      const grads = getGrads(model);
      const base = getWeights(model);
      const rng = makeRng(5);
      const h = 1e-2;
      for (const [name, w] of base) {
        for (let k = 0; k < 3; k++) {
          // Embedding rows of tokens in the batch; other tensors anywhere.
          const i = name === 'model.embed_tokens.weight' ? batch.tokens[k + 1] * s.hiddenSize + k : Math.floor(rng() * w.length);
          const plus = new Map(base);
          const p = Float32Array.from(w);
          p[i] = w[i] + h;
          plus.set(name, p);
          setWeights(model, plus);
          const fp = await loss();
          const m = Float32Array.from(w);
          m[i] = w[i] - h;
          plus.set(name, m);
          setWeights(model, plus);
          const fm = await loss();
          setWeights(model, base);
          const num = (fp - fm) / (2 * h);
          const ana = grads.get(name)![i];
          if (!(Math.abs(num - ana) <= 2e-3 + 2e-2 * Math.abs(num))) {
            throw new Error(`${name}[${i}]: analytic ${ana} vs numeric ${num}`);
          }
        }
      }
    } finally {
      freeTrainableModel(model);
    }
  }

  it('LM loss, untied head, q/k/v bias, padding both sides, weighted loss mask', () => check(false, false));
  it('LM loss, tied embeddings', () => check(true, false));
  it('scalar head at the last real token (reward/value)', () => check(false, true));
  // Gemma 2/3: GeGLU, scaled embeddings, own query scale, soft-capped scores and logits, sandwich norms, q/k norms,
  // a sliding window (3 of the 6 slots) on layer 0 with its own RoPE base.
  it('LM loss, every Gemma knob (GeGLU, soft-caps, sandwich norms, sliding window)', () => check(true, false, GEMMA_KNOBS));
  it('scalar head, every Gemma knob', () => check(true, true, GEMMA_KNOBS));
});

describe('native training determinism and state', () => {
  const weights = randomWeights(spec, 3, expectedWeightShapes(spec));

  async function run(threads: number): Promise<Map<string, Float32Array>> {
    const model = createTrainableModel(spec, weights, { threads });
    // Big enough (B*T = 160 tokens) that the matmuls take their multithreaded path.
    const B = 5, T = 32;
    const rng = makeRng(21);
    const ids = () => Int32Array.from({ length: B * T }, () => Math.floor(rng() * spec.vocabSize));
    const mask = Int32Array.from({ length: B * T }, (_, i) => (i % T < T - (i / T) * 3 ? 1 : 0));
    const batch: TrainBatch = { B, T, tokens: ids(), mask };
    const targets = ids();
    const lw = Float32Array.from(mask, (m, i) => (m && i % 3 !== 0 ? 1 : 0));
    try {
      for (let s = 0; s < 3; s++) {
        zeroGrad(model);
        await trainStep(model, batch, { targets, weights: lw });
        await optimizerStep(model, { ...DEFAULT_OPTIMIZER, lr: 1e-2 });
      }
      return getWeights(model);
    } finally {
      freeTrainableModel(model);
    }
  }

  it('gives bitwise identical weights with 1, 2 and 3 threads', async () => {
    const a = await run(1);
    for (const threads of [2, 3]) {
      const b = await run(threads);
      for (const [name, t] of a) expect(Buffer.from(b.get(name)!.buffer).equals(Buffer.from(t.buffer))).toBe(true);
    }
  });

  it('resumes exactly from weights + optimizer state', async () => {
    const { batch, targets, weights: lw } = batchOf();
    const opt = { ...DEFAULT_OPTIMIZER, lr: 1e-2, warmupSteps: 2, totalSteps: 6 };
    const stepOnce = async (m: ReturnType<typeof createTrainableModel>) => {
      zeroGrad(m);
      await trainStep(m, batch, { targets, weights: lw });
      return optimizerStep(m, opt);
    };
    const a = createTrainableModel(spec, weights, { threads: 2 });
    for (let i = 0; i < 2; i++) await stepOnce(a);
    const saved = { w: getWeights(a), o: getOptimizerState(a) };
    for (let i = 0; i < 2; i++) await stepOnce(a);
    const b = createTrainableModel(spec, saved.w, { threads: 2 });
    setOptimizerState(b, saved.o);
    expect(getOptimizerState(b).step).toBe(2);
    for (let i = 0; i < 2; i++) await stepOnce(b);
    const wa = getWeights(a);
    for (const [name, t] of getWeights(b)) expect(Array.from(t)).toEqual(Array.from(wa.get(name)!));
    freeTrainableModel(a);
    freeTrainableModel(b);
  });

  it('checks arguments before they cross into C++', () => {
    const model = createTrainableModel(spec, weights, { threads: 1 });
    const { batch, targets, weights: lw } = batchOf();
    expect(() => trainStep(model, { ...batch, tokens: new Int32Array(3) }, { targets, weights: lw })).toThrow(/batch.tokens/);
    const bad = Int32Array.from(batch.tokens);
    bad[0] = spec.vocabSize;
    expect(() => trainStep(model, { ...batch, tokens: bad }, { targets, weights: lw })).toThrow(/vocabulary/);
    expect(() => trainStep(model, batch, { targets, weights: new Float32Array(12).fill(-1) })).toThrow(/weights/);
    expect(() => scoreStep(model, batch)).toThrow(/scalar head/);
    expect(() => optimizerStep(model, { ...DEFAULT_OPTIMIZER, lr: NaN })).toThrow(/lr/);
    expect(() => createTrainableModel(spec, new Map(), {})).toThrow(/missing weight/);
    freeTrainableModel(model);
    expect(() => zeroGrad(model)).toThrow(/freed/);
  });
});
