/**
 * Trainable models over the native training path (native/src/train): creating one from a weight map (f32 master
 * weights, optional scalar head, optional LoRA adapters over a frozen base, or a frozen forward-only model), freeing
 * it, its info, and the handle registry and batch checks the other training files share. Every argument is validated
 * before it crosses into C++.
 * Not the steps (training.steps.ts), the optimizer (training.optimizer.ts) or the state copies (training.state.ts).
 */
import { trainingArgs } from './argument.checks';
import type { ModelSpec, WeightMap } from './kernels.types';
import type { NativeExternal } from './native.loader';
import { mulberry32 } from './seeded-random';
import { nativeTraining } from './training.native';
import type { CreateTrainableOptions, LoraInfo, LoraOptions, TensorLayout, TrainableMemory, TrainableModelHandle, TrainableModelInfo, TrainBatch } from './training.types';
import { LORA_TARGETS, loraAdapterShapes, trainableWeightShapes, type LoraTarget } from './weight-shapes';

export interface TrainableState {
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
  /** Forward only: no gradients, no optimizer state. */
  frozen: boolean;
  freed: boolean;
}

const trainables = new WeakMap<object, TrainableState>();

/** The registry entry of a live handle; fails for a foreign or freed one. */
export function trainableState(model: TrainableModelHandle): TrainableState {
  const s = trainables.get(model);
  if (!s) trainingArgs.fail('not a handle from createTrainableModel');
  if (s.freed) trainingArgs.fail('trainable model was freed');
  return s;
}

/** Fails unless the model can train: `what` needs gradients or optimizer state a frozen model does not have. */
export function requireTrainable(s: TrainableState, what: string): void {
  if (s.frozen) trainingArgs.fail(`${what} needs a trainable model; this one was created with frozen: true (forward only: no gradients, no optimizer state)`);
}

function checkLora(o: LoraOptions): { rank: number; alpha: number; targets: LoraTarget[]; seed: number } {
  if (typeof o !== 'object' || o === null) trainingArgs.fail('lora must be an object {rank, alpha?, targets?, seed?}');
  const rank = trainingArgs.int(o.rank, 'lora.rank', 1, 1 << 16);
  const alpha = trainingArgs.finite(o.alpha ?? 2 * rank, 'lora.alpha', 0);
  if (alpha === 0) trainingArgs.fail('lora.alpha must be positive');
  const targets = o.targets ?? LORA_TARGETS;
  if (!Array.isArray(targets) || targets.length === 0) trainingArgs.fail(`lora.targets must be a non-empty list of ${LORA_TARGETS.join(', ')}`);
  const known: readonly string[] = LORA_TARGETS;
  for (const t of targets) {
    if (!known.includes(t)) trainingArgs.fail(`lora.targets: unknown projection '${String(t)}' (expected some of ${LORA_TARGETS.join(', ')})`);
  }
  if (new Set(targets).size !== targets.length) trainingArgs.fail('lora.targets lists a projection twice');
  const seed = trainingArgs.int(o.seed ?? 0, 'lora.seed', 0, 2 ** 32 - 1);
  return { rank, alpha, targets: LORA_TARGETS.filter((t) => targets.includes(t)), seed };
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

export function checkBatch(s: TrainableState, batch: TrainBatch): Int32Array {
  const B = trainingArgs.int(batch.B, 'batch.B', 1);
  const T = trainingArgs.int(batch.T, 'batch.T', 1);
  if (B * T > 2 ** 24) trainingArgs.fail('batch.B * batch.T is too large');
  const n = B * T;
  if (!(batch.tokens instanceof Int32Array) || batch.tokens.length !== n) trainingArgs.fail(`batch.tokens must be an Int32Array of B*T = ${n}`);
  if (!(batch.mask instanceof Int32Array) || batch.mask.length !== n) trainingArgs.fail(`batch.mask must be an Int32Array of B*T = ${n}`);
  const V = s.spec.vocabSize;
  for (let i = 0; i < n; i++) {
    const tok = batch.tokens[i];
    if (tok < 0 || tok >= V) trainingArgs.fail(`batch.tokens[${i}] = ${tok} is outside the vocabulary [0, ${V})`);
    if (batch.mask[i] !== 0 && batch.mask[i] !== 1) trainingArgs.fail(`batch.mask[${i}] must be 0 or 1`);
  }
  const positions = batch.positions ?? defaultPositions(batch.mask, B, T);
  if (!(positions instanceof Int32Array) || positions.length !== n) trainingArgs.fail(`batch.positions must be an Int32Array of B*T = ${n}`);
  for (let i = 0; i < n; i++) {
    if (positions[i] < 0 || positions[i] >= s.spec.maxPositionEmbeddings) {
      trainingArgs.fail(`batch.positions[${i}] = ${positions[i]} is outside [0, ${s.spec.maxPositionEmbeddings})`);
    }
  }
  return positions;
}

export function splitState(s: TrainableState, flat: Float32Array, layout = s.layout): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const t of layout) {
    // A fresh array of this realm (the addon's arrays come from the main context, which jest's vm differs from).
    const a = new Float32Array(t.shape[0] * t.shape[1]);
    a.set(flat.subarray(t.offset, t.offset + a.length));
    out.set(t.name, a);
  }
  return out;
}

export function joinState(s: TrainableState, map: WeightMap, what: string): Float32Array {
  const flat = new Float32Array(s.numParams);
  for (const t of s.layout) {
    const a = map.get(t.name);
    const size = t.shape[0] * t.shape[1];
    if (a === undefined) trainingArgs.fail(`${what}: missing tensor ${t.name}`);
    if (!(a instanceof Float32Array)) trainingArgs.fail(`${what}: ${t.name} must be a Float32Array`);
    if (a.length !== size) trainingArgs.fail(`${what}: ${t.name} has ${a.length} elements, expected ${size}`);
    flat.set(a, t.offset);
  }
  return flat;
}

// ---- lifecycle ---------------------------------------------------------------------------------------------

/**
 * Copies the weights into native f32 master weights; gradients and AdamW moments start at zero, step at 0. With
 * frozen: true the model is forward only and holds the weights alone.
 */
export function createTrainableModel(spec: ModelSpec, weights: WeightMap, opts: CreateTrainableOptions = {}): TrainableModelHandle {
  trainingArgs.int(spec.vocabSize, 'spec.vocabSize', 1);
  trainingArgs.int(spec.hiddenSize, 'spec.hiddenSize', 1);
  trainingArgs.int(spec.numHeads, 'spec.numHeads', 1);
  trainingArgs.int(spec.numKvHeads, 'spec.numKvHeads', 1, spec.numHeads);
  if (spec.numHeads % spec.numKvHeads !== 0) trainingArgs.fail('spec.numKvHeads must divide spec.numHeads');
  if (!Number.isInteger(spec.headDim) || spec.headDim % 2 !== 0 || spec.headDim < 2) trainingArgs.fail('spec.headDim must be an even integer');
  const numLabels = trainingArgs.int(opts.numLabels ?? 0, 'numLabels', 0, 1 << 16);
  const threads = opts.threads === undefined ? 0 : trainingArgs.int(opts.threads, 'threads', 1, 1024);
  const shapes = trainableWeightShapes(spec, numLabels);
  // A sequence-classification checkpoint has no lm_head: allowed when a scalar head is trained.
  const hasLmHead = spec.tieWordEmbeddings || weights.has('lm_head.weight');
  if (!hasLmHead && numLabels > 0) shapes.delete('lm_head.weight');
  const lora = opts.lora === undefined ? null : checkLora(opts.lora);
  if (opts.frozen !== undefined && typeof opts.frozen !== 'boolean') trainingArgs.fail('frozen must be a boolean');
  const frozen = opts.frozen === true;
  const names: string[] = [];
  const tensors: Float32Array[] = [];
  const take = (name: string, rows: number, cols: number, t: Float32Array | undefined) => {
    if (t === undefined) trainingArgs.fail(`missing weight tensor ${name} (expected shape [${rows}, ${cols}])`);
    if (!(t instanceof Float32Array)) trainingArgs.fail(`weight ${name} must be a Float32Array`);
    if (t.length !== rows * cols) trainingArgs.fail(`weight ${name} has ${t.length} elements, expected ${rows}x${cols}`);
    names.push(name);
    tensors.push(t);
  };
  for (const [name, [rows, cols = 1]] of shapes) take(name, rows, cols, weights.get(name));
  if (lora !== null) {
    const adapters = loraAdapterShapes(spec, lora);
    const given = [...weights.keys()].filter((n) => n.startsWith('base_model.model.') && n.includes('.lora_'));
    if (frozen && given.length === 0) {
      trainingArgs.fail('frozen with lora needs the adapters in weights (a fresh adapter computes the base model: create it without lora)');
    }
    if (given.length > 0) {
      // Resuming or continuing an adapter: the map must hold exactly this configuration's adapters.
      const extra = given.find((n) => !adapters.has(n));
      if (extra !== undefined) trainingArgs.fail(`weights hold adapter ${extra}, which lora (rank ${lora.rank}, targets ${lora.targets.join(',')}) does not have`);
      for (const [name, [rows, cols]] of adapters) take(name, rows, cols, weights.get(name));
    } else {
      const rand = mulberry32(lora.seed);
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
  const raw = nativeTraining();
  const nativeLora = lora === null ? null : { rank: lora.rank, alpha: lora.alpha, targets: [...lora.targets] };
  const handleNative = raw.trainModelCreate({ ...spec }, names, tensors, numLabels, threads, nativeLora, frozen);
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
    frozen,
    freed: false,
  });
  return handle;
}

export function freeTrainableModel(model: TrainableModelHandle): void {
  const s = trainables.get(model);
  if (!s || s.freed) return;
  s.freed = true;
  nativeTraining().trainModelFree(s.native);
}

export function trainableModelInfo(model: TrainableModelHandle): TrainableModelInfo {
  const s = trainableState(model);
  const raw = nativeTraining().trainModelLayout(s.native);
  return {
    spec: { ...s.spec },
    numLabels: s.numLabels,
    numParams: s.numParams,
    frozenParams: s.numFrozen,
    lora: s.lora === null ? null : { ...s.lora, targets: [...s.lora.targets] },
    frozen: raw.forwardOnly,
    step: raw.step,
    threads: raw.threads,
    tensors: s.layout.map((t) => ({ ...t, shape: [t.shape[0], t.shape[1]] })),
    allocatedBytes: memoryOf(raw.bytes),
  };
}

function memoryOf(b: { params: number; frozen: number; grads: number; moments: number; activations: number }): TrainableMemory {
  const params = b.params + b.frozen;
  return { params, grads: b.grads, moments: b.moments, activations: b.activations, total: params + b.grads + b.moments + b.activations };
}
