// LoRA on the native training path: the float64 reference of the adapter op against central differences, the
// native op against it, and the model's adapter gradients (A and B of every target, score head) against central
// differences of the native LM loss and policy objective; plus what LoRA promises around them: base tensors get
// no gradient or moments and never change, B = 0 reproduces the base model bit for bit, merged weights in a plain
// model reproduce the adapted one, optimizer state resumes exactly, and bad options fail clearly.
import { makeRng, randomWeights } from './kernels.reference';
import * as R from './training.reference';
import {
  createTrainableModel,
  freeTrainableModel,
  getAdapterWeights,
  getFrozenWeights,
  getGrads,
  getMergedWeights,
  getOptimizerState,
  getWeights,
  loraAdapterShapes,
  optimizerStep,
  policyBackward,
  policyForward,
  scoreStep,
  setLoraEnabled,
  setOptimizerState,
  setWeights,
  trainableModelInfo,
  trainableWeightShapes,
  trainingOps,
  trainStep,
  zeroGrad,
  DEFAULT_OPTIMIZER,
  LORA_TARGETS,
  type LoraOptions,
  type TrainableModelHandle,
  type TrainBatch,
} from '.';

const spec = R.TINY_TRAIN_SPEC;

const LORA: LoraOptions = { rank: 3, alpha: 6, seed: 4 };

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let mag = 1e-30;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    mag = Math.max(mag, Math.abs(b[i]));
  }
  return diff / mag;
}

function fixture() {
  const B = 2, T = 6, n = B * T;
  const rng = makeRng(9);
  const tokens = Int32Array.from({ length: n }, () => Math.floor(rng() * spec.vocabSize));
  const mask = Int32Array.from([1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1]); // right pad, left pad
  const targets = Int32Array.from({ length: n }, () => Math.floor(rng() * spec.vocabSize));
  const weights = Float32Array.from([0, 1, 1, 1, 0, 0, 0, 1, 2, 1, 1, 0]);
  const sel = Int32Array.from([0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0]);
  const dlogp = Float32Array.from({ length: n }, (_, i) => (sel[i] ? rng() * 2 - 1 : 0));
  const dvalues = Float32Array.from({ length: n }, (_, i) => (mask[i] ? rng() * 2 - 1 : 0));
  const batch: TrainBatch = { B, T, tokens, mask };
  return { batch, targets, weights, sel, dlogp, dvalues, n };
}

/** The model's adapters with every B set to random values, so that dA (through B) is not zero. */
function withRandomB(model: TrainableModelHandle, seed: number): Map<string, Float32Array> {
  const rng = makeRng(seed);
  const w = getWeights(model);
  for (const [name, t] of w) if (name.endsWith('lora_B.weight')) for (let i = 0; i < t.length; i++) t[i] = (rng() * 2 - 1) * 0.5;
  setWeights(model, w);
  return w;
}

const bitsEqual = (a: Float32Array, b: Float32Array) =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

describe('the LoRA op', () => {
  const rng = makeRng(31);
  const rand = (n: number, scale = 1) => Float64Array.from({ length: n }, () => (rng() * 2 - 1) * scale);

  it('float64 reference backward matches central differences (dx, da, db)', () => {
    const [N, n, o, r, scale] = [3, 5, 4, 2, 1.5];
    const x = rand(N * n), a = rand(r * n), b = rand(o * r), dy = rand(N * o);
    const f = () => R.dot(dy, R.loraForward(x, a, b, scale, N, n, o, r));
    const g = R.loraBackward(dy, x, a, b, scale, N, n, o, r);
    expect(relErr(g.dx, R.numericGrad(f, x))).toBeLessThan(1e-6);
    expect(relErr(g.da, R.numericGrad(f, a))).toBeLessThan(1e-6);
    expect(relErr(g.db, R.numericGrad(f, b))).toBeLessThan(1e-6);
  });

  it('native forward and backward match the reference (f32 inputs, 1e-5 relative)', () => {
    for (const [N, n, o, r] of [[3, 5, 4, 1], [37, 70, 50, 8]]) {
      const f = (a: Float64Array) => Float32Array.from(a);
      const x = f(rand(N * n)), a = f(rand(r * n)), b = f(rand(o * r)), dy = f(rand(N * o));
      const d = (t: Float32Array) => Float64Array.from(t);
      const g = trainingOps.lora(x, a, b, dy, 0.75, { N, in: n, out: o, r });
      expect(relErr(g.y, R.loraForward(d(x), d(a), d(b), 0.75, N, n, o, r))).toBeLessThan(1e-5);
      const ref = R.loraBackward(d(dy), d(x), d(a), d(b), 0.75, N, n, o, r);
      expect(relErr(g.dx, ref.dx)).toBeLessThan(1e-5);
      expect(relErr(g.da, ref.da)).toBeLessThan(1e-5);
      expect(relErr(g.db, ref.db)).toBeLessThan(1e-5);
    }
  });
});

describe('LoRA adapter gradients vs central differences of the native objective', () => {
  // As training.ops.spec.ts: f32 forward, h = 1e-2, |num - ana| <= 2e-3 + 2e-2 |num| on 3 coordinates of every
  // trainable tensor (A and B of all seven targets in both layers, and the score head).
  async function check(objective: 'lm' | 'policy', tied: boolean): Promise<void> {
    const s = { ...spec, tieWordEmbeddings: tied };
    const numLabels = objective === 'policy' ? 1 : 0;
    const base = randomWeights(s, 77, trainableWeightShapes(s, numLabels));
    const model = createTrainableModel(s, base, { numLabels, lora: LORA, threads: 2 });
    const { batch, targets, weights: lw, sel, dlogp, dvalues } = fixture();
    const value = async (): Promise<number> => {
      if (objective === 'lm') return (await trainStep(model, batch, { targets, weights: lw }, { gradScale: 0 })).loss;
      const r = await policyForward(model, batch, { targets, sel, values: true });
      let j = 0;
      for (let i = 0; i < dlogp.length; i++) j += dlogp[i] * r.logp[i] + dvalues[i] * r.values![i];
      return j;
    };
    try {
      const adapters = withRandomB(model, 12);
      zeroGrad(model);
      if (objective === 'lm') {
        await trainStep(model, batch, { targets, weights: lw });
      } else {
        const r = await policyForward(model, batch, { targets, sel, values: true });
        await policyBackward(model, r.pass, { dlogp, dvalues });
      }
      const grads = getGrads(model);
      const expected = [...loraAdapterShapes(s, { rank: 3, targets: LORA_TARGETS }).keys()];
      if (numLabels > 0) expected.push('score.weight');
      expect([...grads.keys()].sort()).toEqual(expected.sort());
      const rng = makeRng(5);
      const h = 1e-2;
      for (const [name, w] of adapters) {
        // Every adapter matrix gets a real gradient (A through a non-zero B).
        expect(Math.max(...Array.from(grads.get(name)!, Math.abs))).toBeGreaterThan(1e-3);
        for (let k = 0; k < 3; k++) {
          const i = Math.floor(rng() * w.length);
          const at = async (x: number) => {
            const m = new Map(adapters);
            const p = Float32Array.from(w);
            p[i] = x;
            m.set(name, p);
            setWeights(model, m);
            return value();
          };
          const num = ((await at(w[i] + h)) - (await at(w[i] - h))) / (2 * h);
          setWeights(model, adapters);
          const ana = grads.get(name)![i];
          if (!(Math.abs(num - ana) <= 2e-3 + 2e-2 * Math.abs(num))) throw new Error(`${name}[${i}]: analytic ${ana} vs numeric ${num}`);
        }
      }
    } finally {
      freeTrainableModel(model);
    }
  }

  it('LM loss, untied head, q/k/v bias, padding both sides, weighted loss mask', () => check('lm', false));
  it('LM loss, tied embeddings', () => check('lm', true));
  it('policy objective sum(dlogp*logp) + sum(dvalues*values), trainable value head', () => check('policy', false));
});

describe('LoRA model behaviour', () => {
  const base = randomWeights(spec, 3, trainableWeightShapes(spec, 1));
  const { batch, targets, weights: lw, sel, n } = fixture();
  const opt = { ...DEFAULT_OPTIMIZER, lr: 1e-2, warmupSteps: 2, totalSteps: 6 };
  const stepOnce = async (m: TrainableModelHandle) => {
    zeroGrad(m);
    await trainStep(m, batch, { targets, weights: lw });
    return optimizerStep(m, opt);
  };

  it('holds gradients and moments for the adapters only, and never changes the base', async () => {
    const model = createTrainableModel(spec, base, { numLabels: 1, lora: { rank: 2, targets: ['q_proj', 'v_proj'] }, threads: 2 });
    try {
      const info = trainableModelInfo(model);
      const adapterFloats = spec.numLayers * (2 * 16 + 24 * 2 + 2 * 16 + 12 * 2); // q: A (2,16) B (24,2); v: A (2,16) B (12,2)
      expect(info.numParams).toBe(adapterFloats + 16); // + score.weight (1, 16)
      expect(info.frozenParams).toBe([...base.values()].reduce((a, t) => a + t.length, 0) - 16);
      expect(info.lora).toEqual({ rank: 2, alpha: 4, scale: 2, targets: ['q_proj', 'v_proj'] });
      const before = getFrozenWeights(model);
      expect([...before.keys()].sort()).toEqual([...base.keys()].filter((k) => k !== 'score.weight').sort());
      for (let i = 0; i < 3; i++) await stepOnce(model);
      const after = getFrozenWeights(model);
      for (const [name, t] of before) expect(bitsEqual(after.get(name)!, t)).toBe(true);
      for (const [name, t] of before) expect(bitsEqual(t, base.get(name)!)).toBe(true);
      const o = getOptimizerState(model);
      expect([...o.m.keys()].sort()).toEqual([...getWeights(model).keys()].sort());
      // B moved away from zero: the adapters learned.
      const b = getAdapterWeights(model).get('base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight')!;
      expect(Math.max(...Array.from(b, Math.abs))).toBeGreaterThan(0);
    } finally {
      freeTrainableModel(model);
    }
  });

  it('with B = 0 gives exactly the base model (loss, logp, entropy, values, scores)', async () => {
    const plain = createTrainableModel(spec, base, { numLabels: 1, threads: 2 });
    const lora = createTrainableModel(spec, base, { numLabels: 1, lora: LORA, threads: 2 });
    try {
      const a = await trainStep(plain, batch, { targets, weights: lw }, { gradScale: 0 });
      const b = await trainStep(lora, batch, { targets, weights: lw }, { gradScale: 0 });
      expect(b.loss).toBe(a.loss);
      const pa = await policyForward(plain, batch, { targets, sel, values: true });
      const pb = await policyForward(lora, batch, { targets, sel, values: true });
      expect(bitsEqual(pb.logp, pa.logp)).toBe(true);
      expect(bitsEqual(pb.entropy, pa.entropy)).toBe(true);
      expect(bitsEqual(pb.values!, pa.values!)).toBe(true);
      expect(bitsEqual(await scoreStep(lora, batch), await scoreStep(plain, batch))).toBe(true);
      // Without LoRA the merged weights are the weights themselves.
      const merged = getMergedWeights(plain);
      for (const [name, t] of base) expect(bitsEqual(merged.get(name)!, t)).toBe(true);
    } finally {
      freeTrainableModel(plain);
      freeTrainableModel(lora);
    }
  });

  it('merged weights in a plain model give the loss and log-probs of the adapted model (1e-5 relative)', async () => {
    const lora = createTrainableModel(spec, base, { numLabels: 1, lora: LORA, threads: 2 });
    try {
      withRandomB(lora, 40);
      for (let i = 0; i < 2; i++) await stepOnce(lora);
      const merged = getMergedWeights(lora);
      expect([...merged.keys()].sort()).toEqual([...base.keys()].sort());
      // The fold really changed the targeted projections and nothing else.
      expect(bitsEqual(merged.get('model.layers.0.mlp.down_proj.weight')!, base.get('model.layers.0.mlp.down_proj.weight')!)).toBe(false);
      expect(bitsEqual(merged.get('model.layers.0.input_layernorm.weight')!, base.get('model.layers.0.input_layernorm.weight')!)).toBe(true);
      const plain = createTrainableModel(spec, merged, { numLabels: 1, threads: 2 });
      try {
        const a = await trainStep(lora, batch, { targets, weights: lw }, { gradScale: 0 });
        const b = await trainStep(plain, batch, { targets, weights: lw }, { gradScale: 0 });
        expect(Math.abs(a.loss - b.loss) / a.loss).toBeLessThan(1e-5);
        const pa = await policyForward(lora, batch, { targets, sel, values: true });
        const pb = await policyForward(plain, batch, { targets, sel, values: true });
        for (let i = 0; i < n; i++) {
          expect(Math.abs(pa.logp[i] - pb.logp[i])).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(pa.logp[i])));
          expect(Math.abs(pa.values![i] - pb.values![i])).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(pa.values![i])));
        }
      } finally {
        freeTrainableModel(plain);
      }
    } finally {
      freeTrainableModel(lora);
    }
  });

  it('with its adapters off is the frozen base bit for bit (an RL reference without a second copy), and trains nothing', async () => {
    const plain = createTrainableModel(spec, base, { numLabels: 1, threads: 2 });
    const lora = createTrainableModel(spec, base, { numLabels: 1, lora: LORA, threads: 2 });
    try {
      withRandomB(lora, 41);
      await stepOnce(lora);
      const adapted = await policyForward(lora, batch, { targets, sel, values: true });
      setLoraEnabled(lora, false);
      const off = await policyForward(lora, batch, { targets, sel, values: true });
      const ref = await policyForward(plain, batch, { targets, sel, values: true });
      expect(bitsEqual(off.logp, ref.logp)).toBe(true);
      expect(bitsEqual(off.entropy, ref.entropy)).toBe(true);
      expect(bitsEqual(off.logp, adapted.logp)).toBe(false);
      expect((await trainStep(lora, batch, { targets, weights: lw }, { gradScale: 0 })).loss).toBe((await trainStep(plain, batch, { targets, weights: lw }, { gradScale: 0 })).loss);
      // Off, nothing may write gradients: the base is not what this model trains.
      await expect(policyBackward(lora, off.pass, { dlogp: new Float32Array(n).fill(0.1) })).rejects.toThrow(/LoRA adapters are off/);
      await expect(trainStep(lora, batch, { targets, weights: lw })).rejects.toThrow(/LoRA adapters are off/);
      setLoraEnabled(lora, true);
      const again = await policyForward(lora, batch, { targets, sel, values: true });
      expect(bitsEqual(again.logp, adapted.logp)).toBe(true);
      await policyBackward(lora, again.pass, { dlogp: new Float32Array(n).fill(0.1) });
      expect(() => setLoraEnabled(plain, false)).toThrow(/needs a model created with lora options/);
    } finally {
      freeTrainableModel(plain);
      freeTrainableModel(lora);
    }
  });

  it('resumes exactly from base + adapters + optimizer state, and is thread-count independent', async () => {
    const a = createTrainableModel(spec, base, { numLabels: 1, lora: LORA, threads: 2 });
    for (let i = 0; i < 2; i++) await stepOnce(a);
    const saved = { w: getWeights(a), o: getOptimizerState(a) };
    for (let i = 0; i < 2; i++) await stepOnce(a);
    // A resumed run rebuilds the model from the base checkpoint plus the saved adapters (and score head).
    const b = createTrainableModel(spec, new Map([...base, ...saved.w]), { numLabels: 1, lora: LORA, threads: 1 });
    setOptimizerState(b, saved.o);
    for (let i = 0; i < 2; i++) await stepOnce(b);
    const wa = getWeights(a);
    for (const [name, t] of getWeights(b)) expect(bitsEqual(t, wa.get(name)!)).toBe(true);
    freeTrainableModel(a);
    freeTrainableModel(b);
  });

  it('the same seed gives the same initial adapters; A is uniform in +-1/sqrt(in), B is zero', () => {
    const make = (seed: number) => {
      const m = createTrainableModel(spec, base, { numLabels: 1, lora: { ...LORA, seed }, threads: 1 });
      const w = getAdapterWeights(m);
      freeTrainableModel(m);
      return w;
    };
    const [a, b, c] = [make(1), make(1), make(2)];
    const qa = 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight';
    expect(bitsEqual(a.get(qa)!, b.get(qa)!)).toBe(true);
    expect(bitsEqual(a.get(qa)!, c.get(qa)!)).toBe(false);
    const da = a.get('base_model.model.model.layers.0.mlp.down_proj.lora_A.weight')!; // in = intermediate (24)
    expect(Math.max(...Array.from(da, Math.abs))).toBeLessThanOrEqual(1 / Math.sqrt(24));
    expect(a.get('base_model.model.model.layers.0.mlp.down_proj.lora_B.weight')!.every((x) => x === 0)).toBe(true);
  });

  it('refuses bad options clearly', () => {
    const make = (lora: unknown, weights = base) => () =>
      createTrainableModel(spec, weights, { numLabels: 1, lora: lora as LoraOptions, threads: 1 });
    expect(make({ rank: 0 })).toThrow(/lora.rank must be an integer/);
    expect(make({ rank: -2 })).toThrow(/lora.rank/);
    expect(make({ rank: 1.5 })).toThrow(/lora.rank/);
    expect(make({ rank: 2, alpha: 0 })).toThrow(/lora.alpha must be positive/);
    expect(make({ rank: 2, targets: ['q_proj', 'qkv_proj'] })).toThrow(/unknown projection 'qkv_proj'/);
    expect(make({ rank: 2, targets: [] })).toThrow(/non-empty/);
    expect(make({ rank: 2, targets: ['q_proj', 'q_proj'] })).toThrow(/twice/);
    // Adapters in the weight map must be exactly those of the options.
    const q = new Map(base).set('base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight', new Float32Array(2 * 16));
    expect(make({ rank: 2, targets: ['q_proj'] }, q)).toThrow(/k_proj.lora_A.weight, which lora/);
    expect(make({ rank: 2, targets: ['k_proj'] }, q)).toThrow(/missing weight tensor .*k_proj.lora_B/);
    const plain = createTrainableModel(spec, base, { numLabels: 1, threads: 1 });
    expect(() => getAdapterWeights(plain)).toThrow(/no LoRA adapters/);
    expect(getFrozenWeights(plain).size).toBe(0);
    freeTrainableModel(plain);
  });
});
