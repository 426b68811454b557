/**
 * The checked TypeScript API over the native training path (native/src/train): a trainable model with f32 master
 * weights, the LM (next-token cross-entropy with per-token weights) and scalar-head steps that accumulate
 * gradients, AdamW with clipping and a warmup + cosine schedule, optional LoRA adapters (frozen base, merged for
 * export), and state copies for export and resume. Every argument is validated here before it crosses into C++.
 * Not data loading, tokenization or checkpoint files.
 */
import { expectedWeightShapes } from './kernels';
import type { ModelSpec, WeightMap } from './kernels.types';
import { loadNative, NativeExternal } from './native.loader';

declare const trainableBrand: unique symbol;
/** Opaque handle to a trainable model (weights, gradients, AdamW moments) in native memory. */
export type TrainableModelHandle = { readonly [trainableBrand]: true };

/** Raw training exports of the addon (binding/training.cpp); unchecked. */
interface NativeTraining {
  trainModelCreate(
    spec: object,
    names: string[],
    tensors: Float32Array[],
    numLabels: number,
    threads: number,
    lora: { rank: number; alpha: number; targets: string[] } | null,
  ): NativeExternal;
  trainModelFree(h: NativeExternal): void;
  trainModelLayout(h: NativeExternal): {
    names: string[];
    rows: number[];
    cols: number[];
    offsets: number[];
    frozen: boolean[];
    numParams: number;
    numFrozen: number;
    loraRank: number;
    loraScale: number;
    step: number;
    threads: number;
  };
  trainGetState(h: NativeExternal, which: StateBuffer | 'frozen'): Float32Array;
  trainMergedWeights(h: NativeExternal): Float32Array;
  trainSetState(h: NativeExternal, which: StateBuffer, data: Float32Array): void;
  trainSetStep(h: NativeExternal, step: number): void;
  trainZeroGrad(h: NativeExternal): void;
  trainLmStep(
    h: NativeExternal,
    tokens: Int32Array,
    positions: Int32Array,
    mask: Int32Array,
    B: number,
    T: number,
    targets: Int32Array,
    weights: Float32Array,
    gradScale: number,
  ): Promise<{ loss: number; weightSum: number }>;
  trainScoreStep(
    h: NativeExternal,
    tokens: Int32Array,
    positions: Int32Array,
    mask: Int32Array,
    B: number,
    T: number,
    dScores: Float32Array | null,
  ): Promise<Float32Array>;
  trainPolicyForward(
    h: NativeExternal,
    tokens: Int32Array,
    positions: Int32Array,
    mask: Int32Array,
    B: number,
    T: number,
    targets: Int32Array,
    sel: Int32Array,
    values: boolean,
  ): Promise<{ logp: Float32Array; entropy: Float32Array; values?: Float32Array; pass: number }>;
  trainPolicyBackward(h: NativeExternal, pass: number, dlogp: Float32Array | null, dvalues: Float32Array | null): Promise<void>;
  trainOptimizerStep(h: NativeExternal, config: OptimizerConfig): Promise<{ gradNorm: number; lr: number; step: number }>;
  opTrainLora(x: Float32Array, a: Float32Array, b: Float32Array, dy: Float32Array, scale: number, N: number, n: number, o: number, r: number): { y: Float32Array; dx: Float32Array; da: Float32Array; db: Float32Array };
  opTrainMatmulBackward(dy: Float32Array, x: Float32Array, w: Float32Array, N: number, n: number, o: number, reference: boolean): { dx: Float32Array; dw: Float32Array; db: Float32Array };
  opTrainRmsnormBackward(dy: Float32Array, x: Float32Array, w: Float32Array, N: number, C: number, eps: number): { y: Float32Array; dx: Float32Array; dw: Float32Array };
  opTrainRopeBackward(dy: Float32Array, positions: Int32Array, invFreq: Float32Array, N: number, H: number, D: number): Float32Array;
  opTrainAttention(q: Float32Array, k: Float32Array, v: Float32Array, mask: Int32Array, dout: Float32Array, B: number, T: number, H: number, KVH: number, D: number): { out: Float32Array; dq: Float32Array; dk: Float32Array; dv: Float32Array };
  opTrainSwigluBackward(dy: Float32Array, gate: Float32Array, up: Float32Array): { y: Float32Array; dgate: Float32Array; dup: Float32Array };
  opTrainCrossEntropy(logits: Float32Array, targets: Int32Array, weights: Float32Array, M: number, V: number): { loss: number; dlogits: Float32Array };
  opTrainEmbeddingBackward(dy: Float32Array, tokens: Int32Array, V: number, C: number): Float32Array;
}

type StateBuffer = 'params' | 'grads' | 'adamM' | 'adamV';

function native(): NativeTraining {
  // The addon object carries these exports beside the serving ones (addon.cpp calls register_training_exports).
  return loadNative() as unknown as NativeTraining;
}

export interface TensorLayout {
  name: string;
  /** HF layout; vectors (norms, biases) are [n, 1]. */
  shape: [number, number];
  offset: number;
}

interface TrainableState {
  native: NativeExternal;
  spec: ModelSpec;
  numLabels: number;
  hasLmHead: boolean;
  /** Trainable tensors: offsets into params / grads / AdamW moments (numParams). */
  layout: TensorLayout[];
  numParams: number;
  /** Frozen base tensors under LoRA: offsets into the frozen buffer (numFrozen); empty without LoRA. */
  frozenLayout: TensorLayout[];
  numFrozen: number;
  lora: LoraInfo | null;
  freed: boolean;
}

const trainables = new WeakMap<object, TrainableState>();

/** The projections a LoRA adapter may target (HF module names of LlamaAttention / LlamaMLP). */
export const LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

export interface LoraOptions {
  /** Rank r of each adapter: A is (r, in), B is (out, r). */
  rank: number;
  /** The update is scaled by alpha / rank (PEFT's lora_alpha); default 2 * rank. */
  alpha?: number;
  /** Projections that get an adapter in every layer; default all seven. */
  targets?: readonly LoraTarget[];
  /** Seed of A's initialisation (uniform in +-1/sqrt(in), as PEFT's kaiming_uniform(a=sqrt(5))); default 0. */
  seed?: number;
}

/** The resolved LoRA configuration of a model. */
export interface LoraInfo {
  rank: number;
  alpha: number;
  /** alpha / rank as the native path applies it (f32). */
  scale: number;
  targets: LoraTarget[];
}

export interface CreateTrainableOptions {
  /** Native worker threads (the calling thread included); default: hardware cores. */
  threads?: number;
  /**
   * Rows of a scalar head `score.weight` (num_labels, hidden) read at each row's last real token, as HF
   * LlamaForSequenceClassification; must then be in the weight map. 0 (default): no scalar head.
   */
  numLabels?: number;
  /**
   * LoRA: every base tensor is frozen (no gradient, no AdamW moments, never changed) and each targeted projection
   * W of every layer gets trainable A (r, in) and B (out, r): y = x W^T + alpha/r * (x A^T) B^T. The score head,
   * when present, stays trainable. Adapters found in `weights` under their PEFT names (loraAdapterShapes) are used
   * as given (all or none); otherwise A is random and B zero, so the model starts equal to the base.
   */
  lora?: LoraOptions;
}

/**
 * B sequences of T slots, row-major (B*T). mask is 1 for a real token and 0 for padding (left or right); padded
 * slots must still hold a valid token id. positions default to the count of real tokens before each slot
 * (HF's cumsum(mask) - 1, clamped at 0).
 */
export interface TrainBatch {
  B: number;
  T: number;
  tokens: Int32Array;
  mask: Int32Array;
  positions?: Int32Array;
}

/** Next-token targets and per-token loss weights, (B*T) each; loss = sum(w * CE) / sum(w) over slots with w != 0. */
export interface LmTargets {
  targets: Int32Array;
  weights: Float32Array;
}

export interface OptimizerConfig {
  /** Peak learning rate. */
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled (AdamW) decay on matrices; norms and biases are never decayed. */
  weightDecay: number;
  /** Global gradient-norm clip (torch clip_grad_norm_); <= 0 disables. */
  maxGradNorm: number;
  /** Linear warmup: step s < warmupSteps uses lr * (s+1) / warmupSteps. */
  warmupSteps: number;
  /** Cosine decay to lr * minLrRatio at totalSteps; <= 0 keeps lr after warmup. */
  totalSteps: number;
  minLrRatio: number;
}

export const DEFAULT_OPTIMIZER: OptimizerConfig = {
  lr: 3e-4,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: 0.1,
  maxGradNorm: 1.0,
  warmupSteps: 0,
  totalSteps: 0,
  minLrRatio: 0.1,
};

export interface OptimizerStepResult {
  /** Global L2 norm of the accumulated gradients before clipping. */
  gradNorm: number;
  lr: number;
  /** Optimizer steps taken so far (after this one). */
  step: number;
}

/** AdamW moments and step, by parameter name, for resume. */
export interface OptimizerState {
  step: number;
  m: WeightMap;
  v: WeightMap;
}

// ---- checks ------------------------------------------------------------------------------------------------

function fail(message: string): never {
  throw new Error(`training: ${message}`);
}

function checkInt(value: unknown, name: string, min: number, max = 2 ** 31 - 1): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

function checkFinite(value: unknown, name: string, min = -Infinity, max = Infinity): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    fail(`${name} must be a finite number in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

function state(model: TrainableModelHandle): TrainableState {
  const s = trainables.get(model);
  if (!s) fail('not a handle from createTrainableModel');
  if (s.freed) fail('trainable model was freed');
  return s;
}

/** Every tensor a trainable model holds, by HF name, with its [rows, cols]. */
export function trainableWeightShapes(spec: ModelSpec, numLabels = 0): Map<string, [number, number]> {
  const shapes = expectedWeightShapes(spec);
  if (numLabels > 0) shapes.set('score.weight', [numLabels, spec.hiddenSize]);
  return shapes;
}

/** PEFT's name of layer `layer`'s adapter matrix on `target` (as in adapter_model.safetensors). */
export function loraAdapterName(layer: number, target: LoraTarget, which: 'A' | 'B'): string {
  const block = target === 'gate_proj' || target === 'up_proj' || target === 'down_proj' ? 'mlp' : 'self_attn';
  return `base_model.model.model.layers.${layer}.${block}.${target}.lora_${which}.weight`;
}

/** Every adapter tensor of a LoRA model, by PEFT name, with its [rows, cols]: A [rank, in], B [out, rank]. */
export function loraAdapterShapes(spec: ModelSpec, lora: { rank: number; targets: readonly LoraTarget[] }): Map<string, [number, number]> {
  const C = spec.hiddenSize, I = spec.intermediateSize;
  const qd = spec.numHeads * spec.headDim, kvd = spec.numKvHeads * spec.headDim;
  const dims: Record<LoraTarget, [number, number]> = {
    q_proj: [C, qd],
    k_proj: [C, kvd],
    v_proj: [C, kvd],
    o_proj: [qd, C],
    gate_proj: [C, I],
    up_proj: [C, I],
    down_proj: [I, C],
  };
  const shapes = new Map<string, [number, number]>();
  for (let l = 0; l < spec.numLayers; l++) {
    for (const t of LORA_TARGETS) {
      if (!lora.targets.includes(t)) continue;
      const [inDim, outDim] = dims[t];
      shapes.set(loraAdapterName(l, t, 'A'), [lora.rank, inDim]);
      shapes.set(loraAdapterName(l, t, 'B'), [outDim, lora.rank]);
    }
  }
  return shapes;
}

function checkLora(o: LoraOptions): { rank: number; alpha: number; targets: LoraTarget[]; seed: number } {
  if (typeof o !== 'object' || o === null) fail('lora must be an object {rank, alpha?, targets?, seed?}');
  const rank = checkInt(o.rank, 'lora.rank', 1, 1 << 16);
  const alpha = checkFinite(o.alpha ?? 2 * rank, 'lora.alpha', 0);
  if (alpha === 0) fail('lora.alpha must be positive');
  const targets = o.targets ?? LORA_TARGETS;
  if (!Array.isArray(targets) || targets.length === 0) fail(`lora.targets must be a non-empty list of ${LORA_TARGETS.join(', ')}`);
  const known: readonly string[] = LORA_TARGETS;
  for (const t of targets) {
    if (!known.includes(t)) fail(`lora.targets: unknown projection '${String(t)}' (expected some of ${LORA_TARGETS.join(', ')})`);
  }
  if (new Set(targets).size !== targets.length) fail('lora.targets lists a projection twice');
  const seed = checkInt(o.seed ?? 0, 'lora.seed', 0, 2 ** 32 - 1);
  return { rank, alpha, targets: LORA_TARGETS.filter((t) => targets.includes(t)), seed };
}

/** mulberry32: a small seeded generator of uniform [0, 1) for the adapters' initialisation. */
function seededUniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** HF position ids for a padded batch: number of real tokens before each slot, clamped at 0. */
export function defaultPositions(mask: Int32Array, B: number, T: number): Int32Array {
  const pos = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    let seen = 0;
    for (let t = 0; t < T; t++) {
      seen += mask[b * T + t] !== 0 ? 1 : 0;
      pos[b * T + t] = Math.max(0, seen - 1);
    }
  }
  return pos;
}

function checkBatch(s: TrainableState, batch: TrainBatch): Int32Array {
  const B = checkInt(batch.B, 'batch.B', 1);
  const T = checkInt(batch.T, 'batch.T', 1);
  if (B * T > 2 ** 24) fail('batch.B * batch.T is too large');
  const n = B * T;
  if (!(batch.tokens instanceof Int32Array) || batch.tokens.length !== n) fail(`batch.tokens must be an Int32Array of B*T = ${n}`);
  if (!(batch.mask instanceof Int32Array) || batch.mask.length !== n) fail(`batch.mask must be an Int32Array of B*T = ${n}`);
  const V = s.spec.vocabSize;
  for (let i = 0; i < n; i++) {
    const tok = batch.tokens[i];
    if (tok < 0 || tok >= V) fail(`batch.tokens[${i}] = ${tok} is outside the vocabulary [0, ${V})`);
    if (batch.mask[i] !== 0 && batch.mask[i] !== 1) fail(`batch.mask[${i}] must be 0 or 1`);
  }
  const positions = batch.positions ?? defaultPositions(batch.mask, B, T);
  if (!(positions instanceof Int32Array) || positions.length !== n) fail(`batch.positions must be an Int32Array of B*T = ${n}`);
  for (let i = 0; i < n; i++) {
    if (positions[i] < 0 || positions[i] >= s.spec.maxPositionEmbeddings) {
      fail(`batch.positions[${i}] = ${positions[i]} is outside [0, ${s.spec.maxPositionEmbeddings})`);
    }
  }
  return positions;
}

function splitState(s: TrainableState, flat: Float32Array, layout = s.layout): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const t of layout) {
    // A fresh array of this realm (the addon's arrays come from the main context, which jest's vm differs from).
    const a = new Float32Array(t.shape[0] * t.shape[1]);
    a.set(flat.subarray(t.offset, t.offset + a.length));
    out.set(t.name, a);
  }
  return out;
}

function joinState(s: TrainableState, map: WeightMap, what: string): Float32Array {
  const flat = new Float32Array(s.numParams);
  for (const t of s.layout) {
    const a = map.get(t.name);
    const size = t.shape[0] * t.shape[1];
    if (a === undefined) fail(`${what}: missing tensor ${t.name}`);
    if (!(a instanceof Float32Array)) fail(`${what}: ${t.name} must be a Float32Array`);
    if (a.length !== size) fail(`${what}: ${t.name} has ${a.length} elements, expected ${size}`);
    flat.set(a, t.offset);
  }
  return flat;
}

// ---- lifecycle ---------------------------------------------------------------------------------------------

/** Copies the weights into native f32 master weights; gradients and AdamW moments start at zero, step at 0. */
export function createTrainableModel(spec: ModelSpec, weights: WeightMap, opts: CreateTrainableOptions = {}): TrainableModelHandle {
  checkInt(spec.vocabSize, 'spec.vocabSize', 1);
  checkInt(spec.hiddenSize, 'spec.hiddenSize', 1);
  checkInt(spec.numHeads, 'spec.numHeads', 1);
  checkInt(spec.numKvHeads, 'spec.numKvHeads', 1, spec.numHeads);
  if (spec.numHeads % spec.numKvHeads !== 0) fail('spec.numKvHeads must divide spec.numHeads');
  if (!Number.isInteger(spec.headDim) || spec.headDim % 2 !== 0 || spec.headDim < 2) fail('spec.headDim must be an even integer');
  const numLabels = checkInt(opts.numLabels ?? 0, 'numLabels', 0, 1 << 16);
  const threads = opts.threads === undefined ? 0 : checkInt(opts.threads, 'threads', 1, 1024);
  const shapes = trainableWeightShapes(spec, numLabels);
  // A sequence-classification checkpoint has no lm_head: allowed when a scalar head is trained.
  const hasLmHead = spec.tieWordEmbeddings || weights.has('lm_head.weight');
  if (!hasLmHead && numLabels > 0) shapes.delete('lm_head.weight');
  const lora = opts.lora === undefined ? null : checkLora(opts.lora);
  const names: string[] = [];
  const tensors: Float32Array[] = [];
  const take = (name: string, rows: number, cols: number, t: Float32Array | undefined) => {
    if (t === undefined) fail(`missing weight tensor ${name} (expected shape [${rows}, ${cols}])`);
    if (!(t instanceof Float32Array)) fail(`weight ${name} must be a Float32Array`);
    if (t.length !== rows * cols) fail(`weight ${name} has ${t.length} elements, expected ${rows}x${cols}`);
    names.push(name);
    tensors.push(t);
  };
  for (const [name, [rows, cols]] of shapes) take(name, rows, cols, weights.get(name));
  if (lora !== null) {
    const adapters = loraAdapterShapes(spec, lora);
    const given = [...weights.keys()].filter((n) => n.startsWith('base_model.model.') && n.includes('.lora_'));
    if (given.length > 0) {
      // Resuming or continuing an adapter: the map must hold exactly this configuration's adapters.
      const extra = given.find((n) => !adapters.has(n));
      if (extra !== undefined) fail(`weights hold adapter ${extra}, which lora (rank ${lora.rank}, targets ${lora.targets.join(',')}) does not have`);
      for (const [name, [rows, cols]] of adapters) take(name, rows, cols, weights.get(name));
    } else {
      const rand = seededUniform(lora.seed);
      for (const [name, [rows, cols]] of adapters) {
        const t = new Float32Array(rows * cols);
        if (name.endsWith('lora_A.weight')) {
          const bound = 1 / Math.sqrt(cols);
          for (let i = 0; i < t.length; i++) t[i] = (rand() * 2 - 1) * bound;
        }
        take(name, rows, cols, t);
      }
    }
  }
  const raw = native();
  const nativeLora = lora === null ? null : { rank: lora.rank, alpha: lora.alpha, targets: [...lora.targets] };
  const handleNative = raw.trainModelCreate({ ...spec }, names, tensors, numLabels, threads, nativeLora);
  const info = raw.trainModelLayout(handleNative);
  const layout: TensorLayout[] = [];
  const frozenLayout: TensorLayout[] = [];
  info.names.forEach((name, i) => {
    (info.frozen[i] ? frozenLayout : layout).push({ name, shape: [info.rows[i], info.cols[i]], offset: info.offsets[i] });
  });
  const handle = handleNative as TrainableModelHandle;
  trainables.set(handle, {
    native: handleNative,
    spec: { ...spec },
    numLabels,
    hasLmHead,
    layout,
    numParams: info.numParams,
    frozenLayout,
    numFrozen: info.numFrozen,
    lora: lora === null ? null : { rank: lora.rank, alpha: lora.alpha, scale: info.loraScale, targets: lora.targets },
    freed: false,
  });
  return handle;
}

export function freeTrainableModel(model: TrainableModelHandle): void {
  const s = trainables.get(model);
  if (!s || s.freed) return;
  s.freed = true;
  native().trainModelFree(s.native);
}

export interface TrainableModelInfo {
  spec: ModelSpec;
  numLabels: number;
  /** Trainable floats (with LoRA: the adapters and a score head). */
  numParams: number;
  /** Frozen floats (the base model under LoRA; 0 without). */
  frozenParams: number;
  lora: LoraInfo | null;
  step: number;
  threads: number;
  /** The trainable tensors (what getWeights / getGrads / the optimizer state hold). */
  tensors: TensorLayout[];
}

export function trainableModelInfo(model: TrainableModelHandle): TrainableModelInfo {
  const s = state(model);
  const raw = native().trainModelLayout(s.native);
  return {
    spec: { ...s.spec },
    numLabels: s.numLabels,
    numParams: s.numParams,
    frozenParams: s.numFrozen,
    lora: s.lora === null ? null : { ...s.lora, targets: [...s.lora.targets] },
    step: raw.step,
    threads: raw.threads,
    tensors: s.layout.map((t) => ({ ...t, shape: [t.shape[0], t.shape[1]] })),
  };
}

// ---- steps -------------------------------------------------------------------------------------------------

/**
 * Forward + backward of the weighted next-token loss over `batch`; gradients += gradScale * d loss (accumulate
 * micro-batches by calling it several times with gradScale 1/k, then optimizerStep). gradScale 0 evaluates the
 * loss only (no backward). Runs off the JS thread.
 */
export function trainStep(
  model: TrainableModelHandle,
  batch: TrainBatch,
  lm: LmTargets,
  opts: { gradScale?: number } = {},
): Promise<{ loss: number; weightSum: number }> {
  const s = state(model);
  if (!s.hasLmHead) fail('this model has no LM head (lm_head.weight) to train');
  const positions = checkBatch(s, batch);
  const n = batch.B * batch.T;
  if (!(lm.targets instanceof Int32Array) || lm.targets.length !== n) fail(`targets must be an Int32Array of B*T = ${n}`);
  if (!(lm.weights instanceof Float32Array) || lm.weights.length !== n) fail(`weights must be a Float32Array of B*T = ${n}`);
  for (let i = 0; i < n; i++) {
    if (lm.targets[i] < 0 || lm.targets[i] >= s.spec.vocabSize) fail(`targets[${i}] = ${lm.targets[i]} is outside the vocabulary`);
    checkFinite(lm.weights[i], `weights[${i}]`, 0);
  }
  const gradScale = checkFinite(opts.gradScale ?? 1, 'gradScale');
  return native().trainLmStep(s.native, batch.tokens, positions, batch.mask, batch.B, batch.T, lm.targets, lm.weights, gradScale);
}

/**
 * Scalar-head scores (B, numLabels) at each row's last real token (0 for a row without one). With dScores
 * (B, numLabels), also the backward of sum(dScores * scores) into the gradients (reward/value losses: compute
 * the scores first, then pass d loss / d score).
 */
export function scoreStep(model: TrainableModelHandle, batch: TrainBatch, dScores?: Float32Array): Promise<Float32Array> {
  const s = state(model);
  if (s.numLabels <= 0) fail('this model has no scalar head (create it with numLabels and score.weight)');
  const positions = checkBatch(s, batch);
  if (dScores !== undefined) {
    if (!(dScores instanceof Float32Array) || dScores.length !== batch.B * s.numLabels) {
      fail(`dScores must be a Float32Array of B*numLabels = ${batch.B * s.numLabels}`);
    }
    for (let i = 0; i < dScores.length; i++) checkFinite(dScores[i], `dScores[${i}]`);
  }
  return native().trainScoreStep(s.native, batch.tokens, positions, batch.mask, batch.B, batch.T, dScores ?? null);
}

/** Which next-token log-probabilities a policy forward gathers: targets (B*T) and sel (B*T, 1 = gather this slot). */
export interface PolicyTargets {
  targets: Int32Array;
  sel: Int32Array;
  /** Also read the scalar head (one label: a critic) at every slot. */
  values?: boolean;
}

declare const passBrand: unique symbol;
/** Names one policyForward's kept activations; policyBackward accepts it once, before any other step runs. */
export type PolicyPass = { readonly [passBrand]: true; readonly id: number; readonly n: number };

export interface PolicyForwardResult {
  /** log p(targets[i] | tokens[..i]) at selected slots, 0 elsewhere (B*T). */
  logp: Float32Array;
  /** Entropy (nats) of the next-token distribution at selected slots, 0 elsewhere (B*T). */
  entropy: Float32Array;
  /** Scalar-head value at every slot (B*T) when asked for. */
  values?: Float32Array;
  pass: PolicyPass;
}

/**
 * Per-token RL forward (PPO, DPO): log-probabilities and entropies of chosen next tokens and, for a critic, values at
 * every slot. Keeps the activations so policyBackward can add d(objective) without a second forward: objectives
 * whose per-token weights depend on these log-probs (PPO ratios, DPO margins) compute them in between.
 */
export async function policyForward(model: TrainableModelHandle, batch: TrainBatch, t: PolicyTargets): Promise<PolicyForwardResult> {
  const s = state(model);
  const positions = checkBatch(s, batch);
  const n = batch.B * batch.T;
  if (!(t.targets instanceof Int32Array) || t.targets.length !== n) fail(`targets must be an Int32Array of B*T = ${n}`);
  if (!(t.sel instanceof Int32Array) || t.sel.length !== n) fail(`sel must be an Int32Array of B*T = ${n}`);
  let any = false;
  for (let i = 0; i < n; i++) {
    if (t.targets[i] < 0 || t.targets[i] >= s.spec.vocabSize) fail(`targets[${i}] = ${t.targets[i]} is outside the vocabulary`);
    if (t.sel[i] !== 0) any = true;
  }
  if (any && !s.hasLmHead) fail('this model has no LM head to score tokens with');
  if (t.values && s.numLabels !== 1) fail('values need a scalar head with one label (create the model with numLabels: 1)');
  const r = await native().trainPolicyForward(s.native, batch.tokens, positions, batch.mask, batch.B, batch.T, t.targets, t.sel, t.values === true);
  // Fresh arrays of this realm (see splitState).
  const copy = (a: Float32Array) => new Float32Array(a);
  return {
    logp: copy(r.logp),
    entropy: copy(r.entropy),
    values: r.values ? copy(r.values) : undefined,
    pass: { id: r.pass, n } as PolicyPass,
  };
}

/**
 * Adds the gradient of sum(dlogp * logp) + sum(dvalues * values) over the forward named by `pass` (pass d loss /
 * d logp and d loss / d value to descend a loss). Rejects when another step has run on this model since.
 */
export function policyBackward(model: TrainableModelHandle, pass: PolicyPass, d: { dlogp?: Float32Array; dvalues?: Float32Array }): Promise<void> {
  const s = state(model);
  const check = (a: Float32Array | undefined, name: string) => {
    if (a === undefined) return null;
    if (!(a instanceof Float32Array) || a.length !== pass.n) fail(`${name} must be a Float32Array of B*T = ${pass.n}`);
    for (let i = 0; i < a.length; i++) checkFinite(a[i], `${name}[${i}]`);
    return a;
  };
  return native().trainPolicyBackward(s.native, pass.id, check(d.dlogp, 'dlogp'), check(d.dvalues, 'dvalues'));
}

export function checkOptimizerConfig(c: OptimizerConfig): OptimizerConfig {
  return {
    lr: checkFinite(c.lr, 'lr', 0),
    beta1: checkFinite(c.beta1, 'beta1', 0, 0.999999),
    beta2: checkFinite(c.beta2, 'beta2', 0, 0.999999999),
    eps: checkFinite(c.eps, 'eps', 0),
    weightDecay: checkFinite(c.weightDecay, 'weightDecay', 0),
    maxGradNorm: checkFinite(c.maxGradNorm, 'maxGradNorm'),
    warmupSteps: checkInt(c.warmupSteps, 'warmupSteps', 0),
    totalSteps: checkInt(c.totalSteps, 'totalSteps', 0),
    minLrRatio: checkFinite(c.minLrRatio, 'minLrRatio', 0, 1),
  };
}

/** Clips the accumulated gradients by global norm, applies AdamW at the scheduled lr, advances the step. */
export function optimizerStep(model: TrainableModelHandle, config: OptimizerConfig): Promise<OptimizerStepResult> {
  const s = state(model);
  return native().trainOptimizerStep(s.native, checkOptimizerConfig(config));
}

export function zeroGrad(model: TrainableModelHandle): void {
  native().trainZeroGrad(state(model).native);
}

// ---- state ---------------------------------------------------------------------------------------------------

/**
 * Copies of the current trainable weights by name: without LoRA every tensor (a WeightMap createModel / the
 * safetensors writer accept); with LoRA the adapters (PEFT names) and the score head. Export getMergedWeights.
 */
export function getWeights(model: TrainableModelHandle): Map<string, Float32Array> {
  const s = state(model);
  return splitState(s, native().trainGetState(s.native, 'params'));
}

/**
 * The full HF weight map of the model as it computes: with LoRA each targeted W replaced by W + alpha/r * B A
 * (a plain checkpoint, what an export writes); without LoRA the same as getWeights.
 */
export function getMergedWeights(model: TrainableModelHandle): Map<string, Float32Array> {
  const s = state(model);
  if (s.lora === null) return getWeights(model);
  const out = splitState(s, native().trainMergedWeights(s.native), s.frozenLayout);
  for (const [name, t] of getWeights(model)) if (!name.includes('.lora_')) out.set(name, t);
  return out;
}

/** The LoRA adapters by PEFT name (adapter_model.safetensors' tensors); throws for a model without LoRA. */
export function getAdapterWeights(model: TrainableModelHandle): Map<string, Float32Array> {
  const s = state(model);
  if (s.lora === null) fail('this model has no LoRA adapters');
  return new Map([...getWeights(model)].filter(([name]) => name.includes('.lora_')));
}

/** Copies of the frozen base tensors (LoRA) by HF name, as held: never changed by training. Empty without LoRA. */
export function getFrozenWeights(model: TrainableModelHandle): Map<string, Float32Array> {
  const s = state(model);
  if (s.numFrozen === 0) return new Map();
  return splitState(s, native().trainGetState(s.native, 'frozen'), s.frozenLayout);
}

/** Copies of the accumulated gradients by HF name. */
export function getGrads(model: TrainableModelHandle): Map<string, Float32Array> {
  const s = state(model);
  return splitState(s, native().trainGetState(s.native, 'grads'));
}

/** Replaces every trainable weight (all of getWeights' tensors required; with LoRA the adapters and score head). */
export function setWeights(model: TrainableModelHandle, weights: WeightMap): void {
  const s = state(model);
  native().trainSetState(s.native, 'params', joinState(s, weights, 'setWeights'));
}

export function getOptimizerState(model: TrainableModelHandle): OptimizerState {
  const s = state(model);
  const raw = native();
  return {
    step: raw.trainModelLayout(s.native).step,
    m: splitState(s, raw.trainGetState(s.native, 'adamM')),
    v: splitState(s, raw.trainGetState(s.native, 'adamV')),
  };
}

export function setOptimizerState(model: TrainableModelHandle, opt: OptimizerState): void {
  const s = state(model);
  const raw = native();
  checkInt(opt.step, 'step', 0, Number.MAX_SAFE_INTEGER);
  raw.trainSetState(s.native, 'adamM', joinState(s, opt.m, 'optimizer m'));
  raw.trainSetState(s.native, 'adamV', joinState(s, opt.v, 'optimizer v'));
  raw.trainSetStep(s.native, opt.step);
}

/** The learning rate optimizerStep uses at 0-based step `step` (same formula as native/src/train/adamw.cpp). */
export function lrAtStep(c: OptimizerConfig, step: number): number {
  if (c.warmupSteps > 0 && step < c.warmupSteps) return (c.lr * (step + 1)) / c.warmupSteps;
  if (c.totalSteps <= 0) return c.lr;
  const span = c.totalSteps - c.warmupSteps;
  const progress = span > 0 ? Math.min(1, (step - c.warmupSteps) / span) : 1;
  const min = c.lr * c.minLrRatio;
  return min + (c.lr - min) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

// ---- single training ops (tests against training.reference.ts) ------------------------------------------------

function f32(value: unknown, name: string, length: number): Float32Array {
  if (!(value instanceof Float32Array) || value.length !== length) fail(`${name} must be a Float32Array of ${length}`);
  return value;
}

function i32(value: unknown, name: string, length: number, max: number): Int32Array {
  if (!(value instanceof Int32Array) || value.length !== length) fail(`${name} must be an Int32Array of ${length}`);
  for (let i = 0; i < length; i++) if (value[i] < 0 || value[i] > max) fail(`${name}[${i}] = ${value[i]} is outside [0, ${max}]`);
  return value;
}

/** The native training kernels one by one (synchronous, small shapes), for the specs. */
export const trainingOps = {
  /** LoRA term y = scale * (x a^T) b^T alone and its backward: dx (N,in), da (r,in), db (out,r). */
  lora(x: Float32Array, a: Float32Array, b: Float32Array, dy: Float32Array, scale: number, dims: { N: number; in: number; out: number; r: number }) {
    const N = checkInt(dims.N, 'N', 1), n = checkInt(dims.in, 'in', 1), o = checkInt(dims.out, 'out', 1), r = checkInt(dims.r, 'r', 1);
    return native().opTrainLora(f32(x, 'x', N * n), f32(a, 'a', r * n), f32(b, 'b', o * r), f32(dy, 'dy', N * o), checkFinite(scale, 'scale'), N, n, o, r);
  },
  /** y = x @ w^T + b backward: dx (N,in), dw (out,in), db (out); `reference` picks the plain-loop kernel. */
  matmulBackward(dy: Float32Array, x: Float32Array, w: Float32Array, dims: { N: number; in: number; out: number }, reference = false) {
    const N = checkInt(dims.N, 'N', 1), n = checkInt(dims.in, 'in', 1), o = checkInt(dims.out, 'out', 1);
    return native().opTrainMatmulBackward(f32(dy, 'dy', N * o), f32(x, 'x', N * n), f32(w, 'w', o * n), N, n, o, reference);
  },
  rmsnormBackward(dy: Float32Array, x: Float32Array, w: Float32Array, N: number, C: number, eps: number) {
    checkInt(N, 'N', 1);
    checkInt(C, 'C', 1);
    return native().opTrainRmsnormBackward(f32(dy, 'dy', N * C), f32(x, 'x', N * C), f32(w, 'w', C), N, C, checkFinite(eps, 'eps', 0));
  },
  ropeBackward(dy: Float32Array, positions: Int32Array, invFreq: Float32Array, H: number, D: number): Float32Array {
    const N = positions.length;
    checkInt(H, 'H', 1);
    if (!Number.isInteger(D) || D < 2 || D % 2 !== 0) fail('D must be even');
    return native().opTrainRopeBackward(f32(dy, 'dy', N * H * D), i32(positions, 'positions', N, 2 ** 30), f32(invFreq, 'invFreq', D / 2), N, H, D);
  },
  attention(q: Float32Array, k: Float32Array, v: Float32Array, mask: Int32Array, dout: Float32Array, s: { B: number; T: number; H: number; KVH: number; D: number }) {
    const B = checkInt(s.B, 'B', 1), T = checkInt(s.T, 'T', 1), H = checkInt(s.H, 'H', 1), KVH = checkInt(s.KVH, 'KVH', 1, H), D = checkInt(s.D, 'D', 1);
    if (H % KVH !== 0) fail('KVH must divide H');
    const n = B * T;
    return native().opTrainAttention(f32(q, 'q', n * H * D), f32(k, 'k', n * KVH * D), f32(v, 'v', n * KVH * D), i32(mask, 'mask', n, 1), f32(dout, 'dout', n * H * D), B, T, H, KVH, D);
  },
  swigluBackward(dy: Float32Array, gate: Float32Array, up: Float32Array) {
    const n = dy.length;
    return native().opTrainSwigluBackward(f32(dy, 'dy', n), f32(gate, 'gate', n), f32(up, 'up', n));
  },
  crossEntropy(logits: Float32Array, targets: Int32Array, weights: Float32Array, M: number, V: number) {
    checkInt(M, 'M', 1);
    checkInt(V, 'V', 1);
    return native().opTrainCrossEntropy(f32(logits, 'logits', M * V), i32(targets, 'targets', M, V - 1), f32(weights, 'weights', M), M, V);
  },
  embeddingBackward(dy: Float32Array, tokens: Int32Array, V: number, C: number): Float32Array {
    checkInt(V, 'V', 1);
    checkInt(C, 'C', 1);
    return native().opTrainEmbeddingBackward(f32(dy, 'dy', tokens.length * C), i32(tokens, 'tokens', tokens.length, V - 1), V, C);
  },
};
