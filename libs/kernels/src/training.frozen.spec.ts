// Frozen (forward-only) trainable models on the committed models/stories260K: scores, log-probs, entropies, values
// and LM losses are bit-identical to a trainable model's (with and without a score head, with and without LoRA);
// every call that needs gradients or optimizer state is refused in TypeScript with a clear message and, called
// around the checks, by the native side without a crash; the native memory report shows no gradients, no moments
// and one layer's activations instead of all of them.
import * as fs from 'fs';
import * as path from 'path';

import { makeRng, randomF32 } from './kernels.reference';
import type { ModelSpec } from './kernels.types';
import { findRepoRoot } from './native.loader';
import { nativeTraining } from './training.native';
import {
  createTrainableModel,
  DEFAULT_OPTIMIZER,
  freeTrainableModel,
  getGrads,
  getOptimizerState,
  getWeights,
  loraAdapterShapes,
  optimizerStep,
  policyBackward,
  policyForward,
  scoreStep,
  setOptimizerState,
  setWeights,
  trainableModelInfo,
  trainStep,
  zeroGrad,
  type CreateTrainableOptions,
  type TrainableModelHandle,
  type TrainBatch,
} from '.';

const MODEL_DIR = path.join(findRepoRoot(__dirname) ?? process.cwd(), 'models', 'stories260K');

/** The committed checkpoint: config.json as a spec, model.safetensors (all F32) as a weight map. */
function loadStories(): { spec: ModelSpec; weights: Map<string, Float32Array> } {
  const cfg = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, 'config.json'), 'utf8')) as Record<string, number & boolean>;
  const spec: ModelSpec = {
    vocabSize: cfg.vocab_size,
    hiddenSize: cfg.hidden_size,
    intermediateSize: cfg.intermediate_size,
    numLayers: cfg.num_hidden_layers,
    numHeads: cfg.num_attention_heads,
    numKvHeads: cfg.num_key_value_heads,
    headDim: cfg.head_dim,
    rmsNormEps: cfg.rms_norm_eps,
    ropeTheta: cfg.rope_theta,
    ropeScaling: null,
    tieWordEmbeddings: cfg.tie_word_embeddings,
    attentionBias: cfg.attention_bias,
    maxPositionEmbeddings: cfg.max_position_embeddings,
  };
  const buf = fs.readFileSync(path.join(MODEL_DIR, 'model.safetensors'));
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const weights = new Map<string, Float32Array>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (t.dtype !== 'F32') throw new Error(`${name}: expected F32, got ${t.dtype}`);
    const start = 8 + headerLen + t.data_offsets[0];
    const bytes = buf.subarray(start, 8 + headerLen + t.data_offsets[1]);
    weights.set(name, new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)));
  }
  return { spec, weights };
}

const { spec, weights: base } = loadStories();

/** Three rows of 24 slots: full, right-padded, left-padded; targets the next token; every real slot selected. */
function fixture() {
  const B = 3, T = 24, n = B * T;
  const rng = makeRng(5);
  const tokens = Int32Array.from({ length: n }, () => 1 + Math.floor(rng() * (spec.vocabSize - 1)));
  const mask = new Int32Array(n);
  for (let t = 0; t < T; t++) {
    mask[t] = 1;
    mask[T + t] = t < 17 ? 1 : 0;
    mask[2 * T + t] = t >= 9 ? 1 : 0;
  }
  const targets = Int32Array.from({ length: n }, (_, i) => tokens[(i + 1) % n]);
  const sel = Int32Array.from(mask);
  const batch: TrainBatch = { B, T, tokens, mask };
  return { batch, targets, sel, lm: { targets, weights: Float32Array.from(mask) }, n };
}

/** Same bit pattern, element by element (-0 vs 0 and NaN payloads included). */
function expectSameBits(actual: Float32Array, expected: Float32Array): void {
  expect(actual.length).toBe(expected.length);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const b = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  let first = -1;
  for (let i = 0; i < a.length && first < 0; i++) if (a[i] !== b[i]) first = i;
  if (first >= 0) throw new Error(`element ${first} differs: ${actual[first]} vs ${expected[first]}`);
}

function withScoreHead(numLabels: number): Map<string, Float32Array> {
  return new Map([...base, ['score.weight', randomF32(numLabels * spec.hiddenSize, makeRng(9 + numLabels), 0.5)]]);
}

async function withPair<R>(weights: Map<string, Float32Array>, opts: CreateTrainableOptions, run: (m: TrainableModelHandle) => Promise<R>): Promise<[R, R]> {
  const trainable = createTrainableModel(spec, weights, { threads: 2, ...opts });
  const frozen = createTrainableModel(spec, weights, { threads: 2, ...opts, frozen: true });
  try {
    return [await run(trainable), await run(frozen)];
  } finally {
    freeTrainableModel(trainable);
    freeTrainableModel(frozen);
  }
}

describe('frozen models compute exactly what trainable ones compute (stories260K)', () => {
  it('log-probs, entropies and the LM loss without a scalar head', async () => {
    const { batch, targets, sel, lm } = fixture();
    const [t, f] = await withPair(base, {}, async (m) => ({
      r: await policyForward(m, batch, { targets, sel }),
      loss: (await trainStep(m, batch, lm, { gradScale: 0 })).loss,
    }));
    expectSameBits(f.r.logp, t.r.logp);
    expectSameBits(f.r.entropy, t.r.entropy);
    expect(Object.is(f.loss, t.loss)).toBe(true);
    expect(t.r.logp.some((x) => x < 0)).toBe(true);
  });

  it.each([1, 3])('scores and values with a scalar head of %i label(s)', async (numLabels) => {
    const { batch, targets, sel } = fixture();
    const [t, f] = await withPair(withScoreHead(numLabels), { numLabels }, async (m) => ({
      scores: await scoreStep(m, batch),
      r: await policyForward(m, batch, { targets, sel, values: numLabels === 1 }),
    }));
    expectSameBits(f.scores, t.scores);
    expectSameBits(f.r.logp, t.r.logp);
    if (numLabels === 1) expectSameBits(f.r.values!, t.r.values!);
    expect(f.scores.length).toBe(batch.B * numLabels);
  });

  it('with LoRA adapters (nonzero B) on a frozen base, and a score head', async () => {
    const lora = { rank: 4, targets: ['q_proj', 'v_proj', 'o_proj', 'down_proj'] as const };
    const rng = makeRng(33);
    const weights = withScoreHead(1);
    for (const [name, [rows, cols]] of loraAdapterShapes(spec, lora)) weights.set(name, randomF32(rows * cols, rng, 0.2));
    const { batch, targets, sel, lm } = fixture();
    const [t, f] = await withPair(weights, { numLabels: 1, lora: { ...lora, targets: [...lora.targets] } }, async (m) => ({
      scores: await scoreStep(m, batch),
      r: await policyForward(m, batch, { targets, sel, values: true }),
      loss: (await trainStep(m, batch, lm, { gradScale: 0 })).loss,
    }));
    expectSameBits(f.scores, t.scores);
    expectSameBits(f.r.logp, t.r.logp);
    expectSameBits(f.r.values!, t.r.values!);
    expect(Object.is(f.loss, t.loss)).toBe(true);
  });

  it('a frozen LoRA model without its adapters in the weights is refused', () => {
    expect(() => createTrainableModel(spec, base, { lora: { rank: 2 }, frozen: true })).toThrow(/frozen with lora needs the adapters in weights/);
    expect(() => createTrainableModel(spec, base, { frozen: 1 as unknown as boolean })).toThrow(/frozen must be a boolean/);
  });
});

describe('a frozen model refuses what needs gradients or optimizer state', () => {
  it('in TypeScript, with a message naming the call', async () => {
    const weights = withScoreHead(1);
    const m = createTrainableModel(spec, weights, { numLabels: 1, frozen: true, threads: 1 });
    try {
      const { batch, targets, sel, lm } = fixture();
      const refused = /needs a trainable model; this one was created with frozen: true/;
      expect(() => trainStep(m, batch, lm)).toThrow(/trainStep with a gradient \(gradScale 0 evaluates the loss only\) needs a trainable model/);
      expect(() => scoreStep(m, batch, new Float32Array(batch.B))).toThrow(/scoreStep with dScores/);
      const r = await policyForward(m, batch, { targets, sel, values: true });
      expect(() => policyBackward(m, r.pass, { dlogp: new Float32Array(r.pass.n) })).toThrow(/policyBackward needs a trainable model/);
      expect(() => zeroGrad(m)).toThrow(refused);
      expect(() => optimizerStep(m, DEFAULT_OPTIMIZER)).toThrow(/optimizerStep needs a trainable model/);
      expect(() => getGrads(m)).toThrow(/getGrads needs a trainable model/);
      expect(() => getOptimizerState(m)).toThrow(/getOptimizerState needs a trainable model/);
      expect(() => setOptimizerState(m, { step: 0, m: new Map(), v: new Map() })).toThrow(/setOptimizerState needs a trainable model/);
      expect(() => setWeights(m, weights)).toThrow(/frozen model never changes its weights/);
      // Reading the weights is fine, and they are the ones given.
      expectSameBits(getWeights(m).get('model.layers.2.mlp.up_proj.weight')!, weights.get('model.layers.2.mlp.up_proj.weight')!);
      expect(trainableModelInfo(m).frozen).toBe(true);
    } finally {
      freeTrainableModel(m);
    }
  });

  it('natively too, when called past the checks: errors, never a crash', async () => {
    const m = createTrainableModel(spec, withScoreHead(1), { numLabels: 1, frozen: true, threads: 1 });
    const raw = nativeTraining();
    // The handle is the native external (trainable-model.ts registers it as is).
    const h = m as unknown as Parameters<typeof raw.trainZeroGrad>[0];
    try {
      const { batch, targets, sel, lm } = fixture();
      const positions = new Int32Array(batch.B * batch.T);
      const args = [batch.tokens, positions, batch.mask, batch.B, batch.T] as const;
      await expect(raw.trainLmStep(h, ...args, lm.targets, lm.weights, 1)).rejects.toThrow(/LM step with a gradient: the model is frozen/);
      await expect(raw.trainScoreStep(h, ...args, new Float32Array(batch.B))).rejects.toThrow(/score step with a gradient: the model is frozen/);
      const r = await raw.trainPolicyForward(h, ...args, targets, sel, true);
      await expect(raw.trainPolicyBackward(h, r.pass, new Float32Array(batch.B * batch.T), null)).rejects.toThrow(/policy backward: the model is frozen/);
      await expect(raw.trainOptimizerStep(h, DEFAULT_OPTIMIZER)).rejects.toThrow(/optimizer step: the model is frozen/);
      expect(() => raw.trainGetState(h, 'grads')).toThrow(/frozen \(forward only\): it has no grads/);
      expect(() => raw.trainSetState(h, 'adamM', new Float32Array(0))).toThrow(/it has no adamM/);
      // Still usable afterwards.
      expect((await scoreStep(m, batch)).length).toBe(batch.B);
    } finally {
      freeTrainableModel(m);
    }
  });
});

describe('allocated native memory', () => {
  it('frozen: no gradients, no moments, and less activation memory than trainable for the same batch', async () => {
    const weights = withScoreHead(1);
    const trainable = createTrainableModel(spec, weights, { numLabels: 1, threads: 2 });
    const frozen = createTrainableModel(spec, weights, { numLabels: 1, frozen: true, threads: 2 });
    try {
      const floats = [...weights.values()].reduce((n, w) => n + w.length, 0);
      const t0 = trainableModelInfo(trainable).allocatedBytes;
      const f0 = trainableModelInfo(frozen).allocatedBytes;
      expect(t0).toEqual({ params: 4 * floats, grads: 4 * floats, moments: 8 * floats, activations: 0, total: 16 * floats });
      expect(f0).toEqual({ params: 4 * floats, grads: 0, moments: 0, activations: 0, total: 4 * floats });

      const { batch, targets, sel } = fixture();
      for (const m of [trainable, frozen]) {
        await scoreStep(m, batch);
        await policyForward(m, batch, { targets, sel, values: true });
      }
      const t1 = trainableModelInfo(trainable).allocatedBytes;
      const f1 = trainableModelInfo(frozen).allocatedBytes;
      expect(f1.grads + f1.moments).toBe(0);
      expect(f1.activations).toBeGreaterThan(0);
      // One layer's set against numLayers of them (5 here): the shared tables and final norm keep it above 1/5.
      expect(f1.activations).toBeLessThan(t1.activations / 2);
      expect(f1.total).toBeLessThan(t1.total / 3);

      // The set is reused: the same batch again allocates nothing new.
      await scoreStep(frozen, batch);
      expect(trainableModelInfo(frozen).allocatedBytes).toEqual(f1);
    } finally {
      freeTrainableModel(trainable);
      freeTrainableModel(frozen);
    }
  });

  it('LoRA: the frozen base counts as params, adapters get no gradients when frozen', () => {
    const lora = { rank: 2, targets: ['q_proj'] as const };
    const weights = new Map(base);
    const adapters = loraAdapterShapes(spec, lora);
    for (const [name, [rows, cols]] of adapters) weights.set(name, new Float32Array(rows * cols));
    const adapterFloats = [...adapters.values()].reduce((n, [r, c]) => n + r * c, 0);
    const all = [...weights.values()].reduce((n, w) => n + w.length, 0);
    const opts = { lora: { ...lora, targets: [...lora.targets] }, threads: 1 };
    const t = createTrainableModel(spec, weights, opts);
    const f = createTrainableModel(spec, weights, { ...opts, frozen: true });
    try {
      expect(trainableModelInfo(t).allocatedBytes).toMatchObject({ params: 4 * all, grads: 4 * adapterFloats, moments: 8 * adapterFloats });
      expect(trainableModelInfo(f).allocatedBytes).toMatchObject({ params: 4 * all, grads: 0, moments: 0 });
    } finally {
      freeTrainableModel(t);
      freeTrainableModel(f);
    }
  });
});
