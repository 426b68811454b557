// The native training path against the independent float64 torch reference (scripts/reference/
// llama_train_reference.py → test/fixtures/golden/train-*.{json,f32}): loss, EVERY parameter gradient of the LM
// loss and of a scalar-head objective, and the parameters after 10 AdamW steps with gradient accumulation,
// clipping and the warmup + cosine schedule. Tolerance: 1e-4 relative per tensor (max |a-b| / max |ref|).
import * as fs from 'fs';
import * as path from 'path';

import { relError } from './kernels.reference';
import type { ModelSpec } from './kernels.types';
import { findRepoRoot } from './native.loader';
import {
  createTrainableModel,
  freeTrainableModel,
  getGrads,
  getWeights,
  lrAtStep,
  optimizerStep,
  scoreStep,
  trainableModelInfo,
  TrainBatch,
  trainStep,
  zeroGrad,
  type OptimizerConfig,
} from '.';

const ROOT = findRepoRoot(__dirname) ?? process.cwd();
const GOLDEN = path.join(ROOT, 'test', 'fixtures', 'golden');

interface Golden {
  checkpoint: string;
  numParams: number;
  tensors: { name: string; shape: number[]; size: number }[];
  batch: { B: number; T: number; tokens: number[]; mask: number[]; positions: number[]; targets: number[]; weights: number[] };
  lmLoss: number;
  scoreCoef: number[];
  scores: number[];
  optimizer: OptimizerConfig;
  steps: number;
  microBatches: number[][];
  stepLosses: number[];
  stepGradNorms: number[];
  stepLrs: number[];
}

interface HfConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim?: number;
  rms_norm_eps: number;
  rope_theta: number;
  max_position_embeddings: number;
  tie_word_embeddings: boolean;
  attention_bias: boolean;
  model_type?: string;
  rope_scaling:
    | { factor: number; low_freq_factor: number; high_freq_factor: number; original_max_position_embeddings: number }
    | { type: 'longrope'; short_factor: number[]; long_factor: number[] }
    | null;
  no_rope_layers?: number[];
  partial_rotary_factor?: number;
  original_max_position_embeddings?: number;
  // Gemma 2/3 and sliding windows
  query_pre_attn_scalar?: number;
  attn_logit_softcapping?: number | null;
  final_logit_softcapping?: number | null;
  sliding_window?: number | null;
  layer_types?: string[];
  rope_local_base_freq?: number;
}

const isGemma = (cfg: HfConfig): boolean => cfg.model_type === 'gemma2' || cfg.model_type === 'gemma3_text';

/** What Gemma's knobs and sliding windows add to the spec (as libs/model's config parser maps them). */
function gemmaAndWindowOf(cfg: HfConfig): Partial<ModelSpec> {
  const out: Partial<ModelSpec> = {};
  if (isGemma(cfg)) {
    Object.assign(out, {
      hiddenAct: 'gelu_tanh',
      embedScale: Math.fround(Math.sqrt(cfg.hidden_size)),
      attnScale: cfg.query_pre_attn_scalar! ** -0.5,
      sandwichNorms: true,
      normWeightOffset: true,
      ...(cfg.model_type === 'gemma3_text' ? { qkNorm: true, ropeLocalTheta: cfg.rope_local_base_freq } : {}),
      ...(cfg.attn_logit_softcapping ? { attnSoftcap: cfg.attn_logit_softcapping } : {}),
      ...(cfg.final_logit_softcapping ? { finalSoftcap: cfg.final_logit_softcapping } : {}),
    });
  }
  if (cfg.sliding_window != null) {
    out.slidingWindow = cfg.sliding_window;
    if (cfg.layer_types) out.slidingLayers = cfg.layer_types.flatMap((t, i) => (t === 'sliding_attention' ? [i] : []));
  }
  return out;
}

/** The spec libs/model's config parser gives (it cannot be imported here): Llama, Qwen3, SmolLM3, Phi-3, Gemma 2/3 and Mistral fixtures. */
function specOf(cfg: HfConfig): ModelSpec {
  const rs = cfg.rope_scaling != null && !('type' in cfg.rope_scaling) ? cfg.rope_scaling : null;
  const lr = cfg.rope_scaling != null && 'type' in cfg.rope_scaling ? cfg.rope_scaling : null;
  const headDim = cfg.head_dim ?? cfg.hidden_size / cfg.num_attention_heads;
  const rotaryDim = Math.trunc(headDim * (cfg.partial_rotary_factor ?? 1));
  const orig = cfg.original_max_position_embeddings ?? 0;
  const scale = cfg.max_position_embeddings / orig;
  const noRope = (cfg.no_rope_layers ?? []).flatMap((f, i) => (f === 0 ? [i] : []));
  return {
    vocabSize: cfg.vocab_size,
    hiddenSize: cfg.hidden_size,
    intermediateSize: cfg.intermediate_size,
    numLayers: cfg.num_hidden_layers,
    numHeads: cfg.num_attention_heads,
    numKvHeads: cfg.num_key_value_heads,
    headDim,
    rmsNormEps: cfg.rms_norm_eps,
    ropeTheta: cfg.rope_theta,
    ropeScaling: rs
      ? {
          factor: rs.factor,
          lowFreqFactor: rs.low_freq_factor,
          highFreqFactor: rs.high_freq_factor,
          originalMaxPositionEmbeddings: rs.original_max_position_embeddings,
        }
      : null,
    tieWordEmbeddings: cfg.tie_word_embeddings,
    attentionBias: cfg.attention_bias ?? false,
    maxPositionEmbeddings: cfg.max_position_embeddings,
    qkNorm: cfg.model_type === 'qwen3',
    ...gemmaAndWindowOf(cfg),
    ...(rotaryDim < headDim ? { rotaryDim } : {}),
    ...(noRope.length > 0 ? { noRopeLayers: noRope } : {}),
    ...(lr !== null
      ? {
          longRope: {
            shortFactor: lr.short_factor,
            longFactor: lr.long_factor,
            originalMaxPositionEmbeddings: orig,
            attentionFactor: Math.fround(scale <= 1 ? 1 : Math.sqrt(1 + Math.log(scale) / Math.log(orig))),
          },
        }
      : {}),
  };
}

function load(name: string): { g: Golden; spec: ModelSpec; blocks: Map<string, Float32Array>[] } {
  const g = JSON.parse(fs.readFileSync(path.join(GOLDEN, `train-${name}.json`), 'utf8')) as Golden;
  const cfg = JSON.parse(fs.readFileSync(path.join(ROOT, 'test', 'fixtures', name, 'config.json'), 'utf8')) as HfConfig;
  const buf = fs.readFileSync(path.join(GOLDEN, `train-${name}.f32`));
  const all = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  expect(all.length).toBe(4 * g.numParams);
  const blocks: Map<string, Float32Array>[] = [];
  for (let b = 0; b < 4; b++) {
    const m = new Map<string, Float32Array>();
    let off = b * g.numParams;
    for (const t of g.tensors) {
      m.set(t.name, all.slice(off, off + t.size));
      off += t.size;
    }
    blocks.push(m);
  }
  // Gemma stores RMSNorm weights as w of (1 + w); the engine takes 1 + w (the loader adds it), gradients are the same.
  if (isGemma(cfg)) {
    for (const b of [0, 3]) {
      for (const [name, t] of blocks[b]!) if (name.endsWith('norm.weight')) blocks[b]!.set(name, t.map((x) => x + 1));
    }
  }
  return { g, spec: specOf(cfg), blocks };
}

function rowsBatch(g: Golden, rows: number[]): { batch: TrainBatch; targets: Int32Array; weights: Float32Array } {
  const { T } = g.batch;
  const pick = <A extends Int32Array | Float32Array>(src: number[], make: (n: number) => A): A => {
    const out = make(rows.length * T);
    rows.forEach((r, i) => out.set(src.slice(r * T, (r + 1) * T), i * T));
    return out;
  };
  const i32 = (n: number) => new Int32Array(n);
  return {
    batch: {
      B: rows.length,
      T,
      tokens: pick(g.batch.tokens, i32),
      mask: pick(g.batch.mask, i32),
      positions: pick(g.batch.positions, i32),
    },
    targets: pick(g.batch.targets, i32),
    weights: pick(g.batch.weights, (n) => new Float32Array(n)),
  };
}

function expectTensorsClose(actual: Map<string, Float32Array>, expected: Map<string, Float32Array>, tol: number): number {
  let worst = 0;
  for (const [name, ref] of expected) {
    const got = actual.get(name);
    expect(got).toBeDefined();
    const err = relError(got!, ref);
    if (!(err < tol)) throw new Error(`${name}: relative error ${err} exceeds ${tol}`);
    worst = Math.max(worst, err);
    if (process.env.TRAIN_GOLDEN_VERBOSE) process.stderr.write(`${name} ${err.toExponential(2)}\n`);
  }
  return worst;
}

describe.each(['tiny-gqa', 'tiny-mqa-llama3', 'tiny-qwen3', 'tiny-smollm3', 'tiny-phi3', 'tiny-gemma2', 'tiny-gemma3', 'tiny-mistral-swa'])('native training vs the float64 torch reference (%s)', (name) => {
  const { g, spec, blocks } = load(name);
  const [initial, lmGrads, scoreGrads, after] = blocks;
  const allRows = Array.from({ length: g.batch.B }, (_, i) => i);

  it('matches the LM loss and every parameter gradient to 1e-4', async () => {
    const model = createTrainableModel(spec, initial, { numLabels: 1, threads: 2 });
    try {
      expect(trainableModelInfo(model).numParams).toBe(g.numParams);
      const { batch, targets, weights } = rowsBatch(g, allRows);
      const r = await trainStep(model, batch, { targets, weights });
      expect(Math.abs(r.loss - g.lmLoss) / g.lmLoss).toBeLessThan(1e-5);
      const grads = getGrads(model);
      // score.weight is not used by the LM loss: its gradient must stay exactly zero.
      expect(grads.get('score.weight')!.every((x) => x === 0)).toBe(true);
      expect(grads.size).toBe(g.tensors.length);
      expectTensorsClose(grads, lmGrads, 1e-4);
    } finally {
      freeTrainableModel(model);
    }
  });

  it('matches the scalar-head scores and the gradients of sum(coef * score) to 1e-4', async () => {
    const model = createTrainableModel(spec, initial, { numLabels: 1, threads: 2 });
    try {
      const { batch } = rowsBatch(g, allRows);
      const scores = await scoreStep(model, batch);
      expect(relError(scores, g.scores)).toBeLessThan(1e-5);
      expect(getGrads(model).get('score.weight')!.every((x) => x === 0)).toBe(true); // no dScores: forward only
      await scoreStep(model, batch, Float32Array.from(g.scoreCoef));
      expectTensorsClose(getGrads(model), scoreGrads, 1e-4);
    } finally {
      freeTrainableModel(model);
    }
  });

  it('matches the parameters after 10 AdamW steps (accumulation over 2 micro-batches, clipping, warmup+cosine)', async () => {
    const model = createTrainableModel(spec, initial, { numLabels: 1, threads: 2 });
    try {
      for (let step = 0; step < g.steps; step++) {
        zeroGrad(model);
        let loss = 0;
        for (const rows of g.microBatches) {
          const { batch, targets, weights } = rowsBatch(g, rows);
          const r = await trainStep(model, batch, { targets, weights }, { gradScale: 1 / g.microBatches.length });
          loss += r.loss / g.microBatches.length;
        }
        expect(Math.abs(loss - g.stepLosses[step]) / g.stepLosses[step]).toBeLessThan(1e-4);
        const o = await optimizerStep(model, g.optimizer);
        expect(o.step).toBe(step + 1);
        expect(Math.abs(o.gradNorm - g.stepGradNorms[step]) / g.stepGradNorms[step]).toBeLessThan(1e-4);
        expect(o.lr).toBeCloseTo(g.stepLrs[step], 12);
        expect(lrAtStep(g.optimizer, step)).toBeCloseTo(g.stepLrs[step], 12);
      }
      expectTensorsClose(getWeights(model), after, 1e-4);
    } finally {
      freeTrainableModel(model);
    }
  });
});
