/**
 * The checked TypeScript API over the native engine: model and KV cache handles, one engine step (`forward`), block
 * copy-on-write, machine info and the bandwidth probe. Every argument is validated here with a clear Error before it
 * crosses into C++; the addon itself trusts what it gets. Not the single ops (kernels.ops.ts), the training path
 * (training.*.ts), nor the scheduler, sampler or weight loading (libs/model).
 */
import { types as utilTypes } from 'node:util';
import { engineArgs } from './argument.checks';
import type {
  KvCacheHandle,
  Llama3RopeScaling,
  ModelHandle,
  ModelSpec,
  QuantTensor,
  QuantType,
  ServingWeightMap,
  StepBatch,
  WeightDtype,
} from './kernels.types';
import { isQuantType, QUANT_BLOCKS, QUANT_TYPES } from './kernels.types';
import { loadNative, NativeExternal } from './native.loader';
import { isQuantMix, quantMixTypes, type QuantMix } from './quant-mix';
import { everyLayerWindow, expectedWeightShapes } from './weight-shapes';

/** What a model serves: one storage type for every matrix, or one of llama.cpp's K-quant mixes. */
export type ServedDtype = WeightDtype | QuantMix;

interface ModelState {
  native: NativeExternal;
  spec: ModelSpec;
  dtype: ServedDtype;
  freed: boolean;
}

interface CacheState {
  native: NativeExternal;
  spec: ModelSpec;
  numBlocks: number;
  blockSize: number;
  dtype: KvDtype;
  freed: boolean;
}

const models = new WeakMap<object, ModelState>();
const caches = new WeakMap<object, CacheState>();

export interface CreateModelOptions {
  /**
   * 'auto': every quantized tensor kept in its own type (a GGUF file's mix, e.g. Q4_K + Q6_K), f32 ones in f32.
   * 'q4_k_m' / 'q5_k_m': each matrix in the type llama-quantize's mix of that name gives it (quant-mix.ts).
   */
  dtype: ServedDtype | 'auto';
  /** Native worker threads for this model (the calling thread included); default: hardware cores. */
  threads?: number;
}

export interface NativeInfo {
  simd: 'avx2' | 'portable';
  /** Default thread count (hardware cores). */
  threads: number;
  avx2Supported: boolean;
  /**
   * The int8 dot products the quantized matmuls use: AVX-512 VNNI kernels where they have one (else the next),
   * the AVX2 kernels' AVX-VNNI build, or AVX2's maddubs + madd (FLYWHEEL_NATIVE_NO_AVX512=1 and
   * FLYWHEEL_NATIVE_NO_AVXVNNI=1 step down).
   */
  int8Dot: 'avx512-vnni' | 'avx-vnni' | 'avx2' | 'portable';
  /**
   * AMX int8 tiles run the quantized matmuls from 8 tokens on (16 for Q4_0 and Q6_K): prefill and batched decode,
   * where the CPU has them (Intel since Sapphire Rapids) and Linux grants the tile state. They sit on the AVX-512 path
   * (off with it) and FLYWHEEL_NATIVE_NO_AMX=1 turns them off alone.
   */
  amx: boolean;
}


// ---- checks ------------------------------------------------------------------------------------------------

export function checkF32(value: unknown, name: string, length?: number): Float32Array {
  if (!(value instanceof Float32Array)) engineArgs.fail(`${name} must be a Float32Array`);
  if (length !== undefined && value.length !== length) engineArgs.fail(`${name} has ${value.length} elements, expected ${length}`);
  return value;
}

/** Any realm's Uint8Array (a Buffer too): jest's sandbox and the addon can hand over Uint8Arrays of another realm. */
export function isUint8Array(value: unknown): value is Uint8Array {
  return utilTypes.isUint8Array(value);
}

export function checkI32(value: unknown, name: string, length?: number): Int32Array {
  if (!(value instanceof Int32Array)) engineArgs.fail(`${name} must be an Int32Array`);
  if (length !== undefined && value.length !== length) engineArgs.fail(`${name} has ${value.length} elements, expected ${length}`);
  return value;
}

export function checkDtype(dtype: unknown): WeightDtype {
  if (dtype !== 'f32' && dtype !== 'bf16' && !isQuantType(dtype)) {
    engineArgs.fail(`dtype must be one of f32, bf16, ${QUANT_TYPES.join(', ')}; got ${String(dtype)}`);
  }
  return dtype;
}

export function checkThreads(threads: number | undefined): number {
  return threads === undefined ? 0 : engineArgs.int(threads, 'threads', 1, 1024);
}

export function checkScaling(s: Llama3RopeScaling): void {
  engineArgs.positive(s.factor, 'ropeScaling.factor');
  engineArgs.positive(s.lowFreqFactor, 'ropeScaling.lowFreqFactor');
  engineArgs.positive(s.highFreqFactor, 'ropeScaling.highFreqFactor');
  if (s.highFreqFactor <= s.lowFreqFactor) engineArgs.fail('ropeScaling.highFreqFactor must exceed lowFreqFactor');
  engineArgs.int(s.originalMaxPositionEmbeddings, 'ropeScaling.originalMaxPositionEmbeddings', 1);
}

function checkSpec(spec: ModelSpec): void {
  engineArgs.int(spec.vocabSize, 'spec.vocabSize', 1);
  engineArgs.int(spec.hiddenSize, 'spec.hiddenSize', 1);
  engineArgs.int(spec.intermediateSize, 'spec.intermediateSize', 1);
  engineArgs.int(spec.numLayers, 'spec.numLayers', 1);
  engineArgs.int(spec.numHeads, 'spec.numHeads', 1);
  engineArgs.int(spec.numKvHeads, 'spec.numKvHeads', 1, spec.numHeads);
  engineArgs.int(spec.headDim, 'spec.headDim', 2);
  engineArgs.int(spec.maxPositionEmbeddings, 'spec.maxPositionEmbeddings', 1);
  if (spec.numHeads % spec.numKvHeads !== 0) engineArgs.fail('spec.numKvHeads must divide spec.numHeads');
  if (spec.headDim % 2 !== 0) engineArgs.fail('spec.headDim must be even');
  engineArgs.positive(spec.rmsNormEps, 'spec.rmsNormEps');
  engineArgs.positive(spec.ropeTheta, 'spec.ropeTheta');
  if (spec.ropeScaling !== null) checkScaling(spec.ropeScaling);
  const rot = spec.rotaryDim ?? spec.headDim;
  engineArgs.int(rot, 'spec.rotaryDim', 2, spec.headDim);
  if (rot % 2 !== 0) engineArgs.fail('spec.rotaryDim must be even');
  if (spec.noRopeLayers !== undefined) {
    if (!Array.isArray(spec.noRopeLayers)) engineArgs.fail('spec.noRopeLayers must be an array of layer indices');
    for (const l of spec.noRopeLayers) engineArgs.int(l, 'spec.noRopeLayers[i]', 0, spec.numLayers - 1);
  }
  if (spec.longRope !== undefined) {
    const lr = spec.longRope;
    if (spec.ropeScaling !== null) engineArgs.fail('spec.longRope and spec.ropeScaling cannot be combined');
    for (const [name, f] of [['shortFactor', lr.shortFactor], ['longFactor', lr.longFactor]] as const) {
      if (!Array.isArray(f) || f.length !== rot / 2) engineArgs.fail(`spec.longRope.${name} must hold rotaryDim / 2 = ${rot / 2} factors`);
      for (const x of f) engineArgs.positive(x, `spec.longRope.${name}[i]`);
    }
    engineArgs.int(lr.originalMaxPositionEmbeddings, 'spec.longRope.originalMaxPositionEmbeddings', 1);
    engineArgs.positive(lr.attentionFactor, 'spec.longRope.attentionFactor');
  }
  if (spec.hiddenAct !== undefined && spec.hiddenAct !== 'silu' && spec.hiddenAct !== 'gelu_tanh') {
    engineArgs.fail(`spec.hiddenAct must be 'silu' or 'gelu_tanh'`);
  }
  for (const key of ['embedScale', 'attnScale', 'attnSoftcap', 'finalSoftcap', 'ropeLocalTheta', 'ropeLinearFactor'] as const) {
    if (spec[key] !== undefined) engineArgs.positive(spec[key], `spec.${key}`);
  }
  if (spec.ropeLinearFactor !== undefined && (spec.ropeScaling !== null || spec.longRope !== undefined)) {
    engineArgs.fail('spec.ropeLinearFactor cannot be combined with spec.ropeScaling or spec.longRope');
  }
  if (spec.slidingWindow !== undefined) engineArgs.int(spec.slidingWindow, 'spec.slidingWindow', 1);
  if (spec.slidingLayers !== undefined) {
    if (spec.slidingWindow === undefined) engineArgs.fail('spec.slidingLayers needs spec.slidingWindow');
    if (!Array.isArray(spec.slidingLayers)) engineArgs.fail('spec.slidingLayers must be an array of layer indices');
    for (const l of spec.slidingLayers) engineArgs.int(l, 'spec.slidingLayers[i]', 0, spec.numLayers - 1);
  }
  if (spec.vocabSize * spec.hiddenSize > 2 ** 31 - 1) engineArgs.fail('spec.vocabSize * spec.hiddenSize is too large');
}

function modelState(model: ModelHandle): ModelState {
  const state = models.get(model);
  if (!state) engineArgs.fail('not a model handle from createModel');
  if (state.freed) engineArgs.fail('model was freed');
  return state;
}

function cacheState(cache: KvCacheHandle): CacheState {
  const state = caches.get(cache);
  if (!state) engineArgs.fail('not a KV cache handle from createKvCache');
  if (state.freed) engineArgs.fail('KV cache was freed');
  return state;
}

// ---- models and caches -------------------------------------------------------------------------------------

/**
 * Copies the weights into one native allocation, converting each matrix to the dtype: bf16 rounds to nearest even;
 * a quantized dtype keeps tensors already in it bit for bit and quantizes the others (the 32-weight types as gguf-py
 * does; a matrix whose rows its blocks cannot split falls back to q8_0, then f32); f32 and bf16 widen quantized
 * tensors; 'auto' keeps every quantized tensor in its own type.
 */
export function createModel(spec: ModelSpec, weights: ServingWeightMap, opts: CreateModelOptions): ModelHandle {
  checkSpec(spec);
  if (isQuantMix(opts.dtype)) return createMixedModel(spec, weights, opts.dtype, opts.threads);
  const args = modelArgs(spec, weights, opts.dtype, opts.threads);
  return registerModel(loadNative().modelCreate(...args), spec, args[3]);
}

/**
 * createModel with the packing (a copy and conversion of every tensor: about half a second for a 135M f32 model here)
 * on a worker thread, so the event loop (a policy's serving engine, during a hot swap) keeps running. The tensors must
 * not change until it settles. A quant mix converts its tensors first, on the calling thread.
 */
export async function createModelAsync(spec: ModelSpec, weights: ServingWeightMap, opts: CreateModelOptions): Promise<ModelHandle> {
  checkSpec(spec);
  if (isQuantMix(opts.dtype)) {
    const handle = await createModelAsync(spec, convertWeights(weights, quantMixTypes(spec, opts.dtype)), { dtype: 'auto', threads: opts.threads });
    modelState(handle).dtype = opts.dtype;
    return handle;
  }
  const args = modelArgs(spec, weights, opts.dtype, opts.threads);
  return registerModel(await loadNative().modelCreateAsync(...args), spec, args[3]);
}

type ModelCreateArgs = [spec: ModelSpec, names: string[], tensors: (Float32Array | Uint8Array)[], dtype: WeightDtype | 'auto', threads: number, types: string[]];

/** The checked arguments of modelCreate: every expected tensor, by name, with its storage type. */
function modelArgs(spec: ModelSpec, weights: ServingWeightMap, requested: CreateModelOptions['dtype'], threadCount: number | undefined): ModelCreateArgs {
  const dtype = requested === 'auto' ? 'auto' : checkDtype(requested);
  const threads = checkThreads(threadCount);
  const names: string[] = [];
  const tensors: (Float32Array | Uint8Array)[] = [];
  const types: string[] = [];
  for (const [name, [rows, cols = 1]] of expectedWeightShapes(spec)) {
    const t = weights.get(name);
    if (t === undefined) engineArgs.fail(`missing weight tensor ${name} (expected shape [${rows}, ${cols}])`);
    if (utilTypes.isFloat32Array(t)) {
      if (t.length !== rows * cols) engineArgs.fail(`weight ${name} has ${t.length} elements, expected ${rows}x${cols} = ${rows * cols}`);
      tensors.push(t);
      types.push('f32');
    } else {
      if (t === null || typeof t !== 'object' || !isQuantType(t.dtype) || !isUint8Array(t.blocks)) {
        engineArgs.fail(`weight ${name} must be a Float32Array or a quantized tensor (${QUANT_TYPES.join(', ')})`);
      }
      const { elems, bytes: blockBytes } = QUANT_BLOCKS[t.dtype];
      if (cols % elems !== 0) engineArgs.fail(`weight ${name} is ${t.dtype} but its rows of ${cols} are not a multiple of ${elems}`);
      const bytes = (rows * cols * blockBytes) / elems;
      if (t.blocks.length !== bytes) engineArgs.fail(`weight ${name} has ${t.blocks.length} bytes of ${t.dtype} blocks, expected ${bytes}`);
      tensors.push(t.blocks);
      types.push(t.dtype);
    }
    names.push(name);
  }
  return [{ ...spec }, names, tensors, dtype, threads, types];
}

function registerModel(native: NativeExternal, spec: ModelSpec, dtype: WeightDtype | 'auto'): ModelHandle {
  // The branded handle is the native external itself; the brand exists only in the type system.
  const handle = native as ModelHandle;
  const weightTypes = loadNative().modelInfo(native).weightTypes;
  // The served dtype: the one asked for, or under 'auto' the type most matrices are stored in.
  const served = dtype !== 'auto' ? dtype : checkDtype(Object.entries(weightTypes).sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'f32');
  models.set(handle, { native, spec: { ...spec }, dtype: served, freed: false });
  return handle;
}

/**
 * Each named tensor in its target type: kept bit for bit where it already is, else widened to f32 and quantized
 * (createModel's mixes, and the benchmark's GGUF of exactly what the engine stores). A missing tensor is skipped (the
 * model built from the result names it).
 */
export function convertWeights(weights: ServingWeightMap, targets: ReadonlyMap<string, QuantType | 'f32'>): Map<string, Float32Array | QuantTensor> {
  const native = loadNative();
  const converted = new Map<string, Float32Array | QuantTensor>();
  for (const [name, target] of targets) {
    const t = weights.get(name);
    if (t === undefined) continue;
    if (utilTypes.isFloat32Array(t) ? target === 'f32' : t.dtype === target) {
      converted.set(name, t);
      continue;
    }
    const f32 = utilTypes.isFloat32Array(t) ? t : isQuantType(t.dtype) && isUint8Array(t.blocks) ? native.opDequantize(t.dtype, t.blocks) : null;
    if (f32 === null) engineArgs.fail(`weight ${name} must be a Float32Array or a quantized tensor (${QUANT_TYPES.join(', ')})`);
    converted.set(name, target === 'f32' ? f32 : { dtype: target, blocks: native.opQuantize(target, f32) });
  }
  return converted;
}

/** A K-quant mix: every matrix converted to its type here, then kept as is. */
function createMixedModel(spec: ModelSpec, weights: ServingWeightMap, mix: QuantMix, threads: number | undefined): ModelHandle {
  const handle = createModel(spec, convertWeights(weights, quantMixTypes(spec, mix)), { dtype: 'auto', threads });
  modelState(handle).dtype = mix;
  return handle;
}

export function freeModel(model: ModelHandle): void {
  const state = models.get(model);
  if (!state || state.freed) return;
  state.freed = true;
  loadNative().modelFree(state.native);
}

/** Resizes the model's native thread pool; blocks until an in-flight step finishes, so call it between steps. */
export function setModelThreads(model: ModelHandle, threads: number): void {
  loadNative().modelSetThreads(modelState(model).native, engineArgs.int(threads, 'threads', 1, 1024));
}

/**
 * How forward() runs a step. `auto` (the default) picks by the step's multiply-adds: a tiny step (a small model's
 * decode) runs on the calling thread, since handing it to a worker thread and back costs more than the step, and a
 * small one on a single thread; the rest run on a worker thread with the model's pool. `worker` and `inline` force
 * one way, for tests (both give the same logits) and benchmarks.
 */
export type StepMode = 'auto' | 'worker' | 'inline';

export function setModelStepMode(model: ModelHandle, mode: StepMode): void {
  if (mode !== 'auto' && mode !== 'worker' && mode !== 'inline') engineArgs.fail(`step mode must be 'auto', 'worker' or 'inline', got ${String(mode)}`);
  loadNative().modelSetStepMode(modelState(model).native, mode);
}

export interface ModelInfo {
  spec: ModelSpec;
  /** The served dtype: as asked (a mix included), or under 'auto' the type most matrices are stored in. */
  dtype: ServedDtype;
  /** Matrices (stacked projections count once) per stored type, e.g. { q4_k: 9, q6_k: 3 }. */
  weightTypes: Partial<Record<WeightDtype, number>>;
  threads: number;
  /** Bytes of every weight matrix one decode step streams (all layers and the LM head), in the stored dtype. */
  matmulWeightBytes: number;
}

export function modelInfo(model: ModelHandle): ModelInfo {
  const state = modelState(model);
  const raw = loadNative().modelInfo(state.native);
  return {
    spec: { ...state.spec },
    dtype: state.dtype,
    weightTypes: raw.weightTypes,
    threads: raw.threads,
    matmulWeightBytes: raw.matmulWeightBytes,
  };
}

/** How K/V values are stored: f32, or IEEE half (half the bytes per token; attention reads them widened to f32). */
export type KvDtype = 'f32' | 'f16';

/** Per layer K and V pools of (numBlocks, blockSize, numKvHeads, headDim) in `dtype` (default f32), zeroed. */
export function createKvCache(model: ModelHandle, numBlocks: number, blockSize: number, dtype: KvDtype = 'f32'): KvCacheHandle {
  const state = modelState(model);
  engineArgs.int(numBlocks, 'numBlocks', 1);
  engineArgs.int(blockSize, 'blockSize', 1);
  if (dtype !== 'f32' && dtype !== 'f16') engineArgs.fail(`KV dtype must be f32 or f16, got ${String(dtype)}`);
  const { spec } = state;
  if (numBlocks * blockSize * spec.numKvHeads * spec.headDim > 2 ** 31 - 1) engineArgs.fail('KV cache pool too large');
  const native = loadNative().cacheCreate(state.native, numBlocks, blockSize, dtype);
  const handle = native as KvCacheHandle;
  caches.set(handle, { native, spec: state.spec, numBlocks, blockSize, dtype, freed: false });
  return handle;
}

export function freeCache(cache: KvCacheHandle): void {
  const state = caches.get(cache);
  if (!state || state.freed) return;
  state.freed = true;
  loadNative().cacheFree(state.native);
}

export interface KvCacheInfo {
  numBlocks: number;
  blockSize: number;
  dtype: KvDtype;
  /** Bytes one token's K and V take over all layers. */
  bytesPerToken: number;
  numLayers: number;
  numKvHeads: number;
  headDim: number;
}

export function kvCacheInfo(cache: KvCacheHandle): KvCacheInfo {
  const s = cacheState(cache);
  return {
    numBlocks: s.numBlocks,
    blockSize: s.blockSize,
    dtype: s.dtype,
    bytesPerToken: 2 * s.spec.numLayers * s.spec.numKvHeads * s.spec.headDim * (s.dtype === 'f16' ? 2 : 4),
    numLayers: s.spec.numLayers,
    numKvHeads: s.spec.numKvHeads,
    headDim: s.spec.headDim,
  };
}

/**
 * Copy-on-write: block src[i] is copied to dst[i] in every layer's K and V pools. Synchronous (a few memcpys);
 * it waits for an in-flight step on the same cache, so the engine calls it between steps.
 */
export function copyBlocks(cache: KvCacheHandle, src: ArrayLike<number>, dst: ArrayLike<number>): void {
  const state = cacheState(cache);
  if (src.length !== dst.length) engineArgs.fail(`copyBlocks: src has ${src.length} ids, dst ${dst.length}`);
  const s = Int32Array.from(src);
  const d = Int32Array.from(dst);
  const sources = new Set<number>();
  for (let i = 0; i < s.length; i++) {
    engineArgs.int(src[i], `copyBlocks src[${i}]`, 0, state.numBlocks - 1);
    sources.add(s[i]);
  }
  const targets = new Set<number>();
  for (let i = 0; i < d.length; i++) {
    engineArgs.int(dst[i], `copyBlocks dst[${i}]`, 0, state.numBlocks - 1);
    if (targets.has(d[i])) engineArgs.fail(`copyBlocks: block ${d[i]} is a destination twice`);
    if (sources.has(d[i])) engineArgs.fail(`copyBlocks: block ${d[i]} is both a source and a destination`);
    targets.add(d[i]);
  }
  loadNative().cacheCopyBlocks(state.native, s, d);
}

/** Copies of one layer's K and V pools, (numBlocks, blockSize, numKvHeads, headDim) each. For tests/debugging. */
export function readKvLayer(cache: KvCacheHandle, layer: number): { k: Float32Array; v: Float32Array } {
  const state = cacheState(cache);
  engineArgs.int(layer, 'layer', 0, state.spec.numLayers - 1);
  return loadNative().cacheReadLayer(state.native, layer);
}

// ---- one engine step ---------------------------------------------------------------------------------------

function checkBatch(spec: ModelSpec, cache: CacheState, batch: StepBatch): void {
  const tokens = checkI32(batch.tokens, 'batch.tokens');
  const T = tokens.length;
  if (T === 0) engineArgs.fail('batch.tokens is empty');
  const positions = checkI32(batch.positions, 'batch.positions', T);
  const seqIndex = checkI32(batch.seqIndex, 'batch.seqIndex', T);
  const tables = checkI32(batch.blockTables, 'batch.blockTables');
  const maxBlocks = engineArgs.int(batch.maxBlocksPerSeq, 'batch.maxBlocksPerSeq', 1);
  if (tables.length === 0 || tables.length % maxBlocks !== 0) {
    engineArgs.fail(`batch.blockTables length ${tables.length} is not a positive multiple of maxBlocksPerSeq ${maxBlocks}`);
  }
  const S = tables.length / maxBlocks;
  const { blockSize, numBlocks } = cache;
  // On a model whose every layer slides, a sequence reads only its window: the blocks before it may be released
  // (-1), and it may be longer than the pool.
  const window = everyLayerWindow(spec);
  const maxPos = (window === null ? Math.min(maxBlocks * blockSize, numBlocks * blockSize) : maxBlocks * blockSize) - 1;
  const seen = new Set<number>();
  let runStart = 0;
  const slots = new Set<number>();
  for (let t = 0; t < T; t++) {
    const tok = tokens[t];
    if (tok < 0 || tok >= spec.vocabSize) engineArgs.fail(`batch.tokens[${t}] = ${tok} is outside the vocabulary [0, ${spec.vocabSize})`);
    const s = seqIndex[t];
    if (s < 0 || s >= S) engineArgs.fail(`batch.seqIndex[${t}] = ${s} is outside [0, ${S})`);
    const p = positions[t];
    if (p < 0 || p > maxPos) engineArgs.fail(`batch.positions[${t}] = ${p} is outside [0, ${maxPos}] (block table capacity)`);
    const continues = t > 0 && seqIndex[t - 1] === s;
    if (continues) {
      if (p !== positions[t - 1] + 1) engineArgs.fail(`batch.positions[${t}] = ${p} does not follow ${positions[t - 1]} of the same sequence`);
    } else {
      if (seen.has(s)) engineArgs.fail(`tokens of sequence ${s} are not contiguous in the batch`);
      seen.add(s);
      runStart = t;
    }
    const lastOfRun = t === T - 1 || seqIndex[t + 1] !== s;
    if (lastOfRun) {
      // Every block the run reads (positions 0..p, or from its first query's window on) must be a real block.
      const firstRead = window === null ? 0 : Math.max(0, positions[runStart] - window + 1);
      for (let j = Math.floor(firstRead / blockSize); j <= Math.floor(p / blockSize); j++) {
        const block = tables[s * maxBlocks + j];
        if (block < 0 || block >= numBlocks) {
          engineArgs.fail(`batch.blockTables[${s}][${j}] = ${block} is not a block id in [0, ${numBlocks}) but position ${p} needs it`);
        }
      }
    }
    const slot = tables[s * maxBlocks + Math.floor(p / blockSize)] * blockSize + (p % blockSize);
    if (slots.has(slot)) engineArgs.fail(`two tokens of the batch write the same KV slot ${slot}`);
    slots.add(slot);
  }
  for (let i = 0; i < tables.length; i++) {
    const b = tables[i];
    if (b !== -1 && (b < 0 || b >= numBlocks)) engineArgs.fail(`batch.blockTables[${i}] = ${b} is neither -1 nor a block id in [0, ${numBlocks})`);
  }
  const rows = checkI32(batch.logitRows, 'batch.logitRows');
  for (let i = 0; i < rows.length; i++) {
    if (rows[i] < 0 || rows[i] >= T) engineArgs.fail(`batch.logitRows[${i}] = ${rows[i]} is outside [0, ${T})`);
  }
}

/**
 * Runs one engine step off the JavaScript thread: writes the K/V of every batch token into its cache slot, then
 * returns (L, vocab) logits for batch.logitRows. Steps on one model (or cache) run one at a time.
 */
export function forward(model: ModelHandle, cache: KvCacheHandle, batch: StepBatch): Promise<Float32Array> {
  const m = modelState(model);
  const c = cacheState(cache);
  const a = m.spec;
  const b = c.spec;
  if (a.numLayers !== b.numLayers || a.numKvHeads !== b.numKvHeads || a.headDim !== b.headDim) {
    engineArgs.fail('the KV cache was created for a model of a different shape');
  }
  checkBatch(m.spec, c, batch);
  return loadNative().forward(
    m.native,
    c.native,
    batch.tokens,
    batch.positions,
    batch.seqIndex,
    batch.blockTables,
    batch.maxBlocksPerSeq,
    batch.logitRows,
  );
}

// ---- sampling ------------------------------------------------------------------------------------------------

/**
 * The sampler's softmax weights of one logits row: out[i] = exp((x[i] - max) * invTemperature) in double (0 for -inf
 * ids), within 2 ulp of Math.exp (the spec's bound), vectorised; returns their sum. `max` is the row's max, so no weight exceeds 1.
 * Synchronous, on the caller's thread.
 */
export function softmaxWeights(x: Float32Array, max: number, invTemperature: number, out: Float64Array): number {
  if (!(x instanceof Float32Array) || !(out instanceof Float64Array) || out.length < x.length) {
    engineArgs.fail('softmaxWeights needs a Float32Array row and a Float64Array at least as long');
  }
  if (!(invTemperature > 0) || Number.isNaN(max)) engineArgs.fail(`softmaxWeights needs invTemperature > 0 and a max (got ${invTemperature}, ${max})`);
  return loadNative().softmaxWeights(x, max, invTemperature, out);
}

/**
 * The min(k, x.length) best ids of a logits row, best first in (value desc, id asc) order (NaN ranks as -inf), by a
 * size-k heap: top-k and top_logprobs. Written into `out`; returns how many. Synchronous, on the caller's thread.
 */
export function topKIds(x: Float32Array, k: number, out: Int32Array): number {
  if (!(x instanceof Float32Array) || !(out instanceof Int32Array)) engineArgs.fail('topKIds needs a Float32Array row and an Int32Array');
  if (!Number.isInteger(k) || k < 0 || k > 0x7fffffff) engineArgs.fail(`topKIds needs an integer k >= 0 (got ${k})`);
  if (out.length < Math.min(k, x.length)) engineArgs.fail(`topKIds needs out of at least ${Math.min(k, x.length)} ids (got ${out.length})`);
  return loadNative().topKIds(x, k, out);
}

/**
 * Top-p's candidates: a prefix of a logits row's ids in (value desc, id asc) order whose weights `w` (softmaxWeights
 * of `x` at `max`; `total` is its sum), summed in that order, reach p × total: every id the nucleus keeps and a few
 * after it, or all ids when the prefix falls short (rounding at p near 1). Written into `out` (as long as `x`);
 * returns how many. Synchronous, on the caller's thread.
 */
export function nucleusIds(x: Float32Array, w: Float64Array, max: number, total: number, p: number, out: Int32Array): number {
  if (!(x instanceof Float32Array) || !(w instanceof Float64Array) || !(out instanceof Int32Array) || w.length < x.length || out.length < x.length) {
    engineArgs.fail('nucleusIds needs a Float32Array row, its Float64Array weights and an Int32Array, both at least as long');
  }
  if (Number.isNaN(max) || Number.isNaN(total) || Number.isNaN(p)) engineArgs.fail(`nucleusIds needs a max, a total and p (got ${max}, ${total}, ${p})`);
  return loadNative().nucleusIds(x, w, max, total, p, out);
}

// ---- machine -----------------------------------------------------------------------------------------------

export function nativeInfo(): NativeInfo {
  const raw = loadNative().info();
  const int8Dot = raw.simd === 'portable' ? 'portable' : raw.avx512Vnni ? 'avx512-vnni' : raw.avxVnni ? 'avx-vnni' : 'avx2';
  return { simd: raw.simd, threads: raw.hardwareThreads, avx2Supported: raw.avx2Supported, int8Dot, amx: raw.amx };
}

/**
 * STREAM triad bandwidth in GB/s (3 * bytesPerArray per pass, best of 5), over arrays much larger than L3.
 * Default 64 MiB per array.
 */
export function measureTriadGbps(bytesPerArray = 64 * 1024 * 1024, threads?: number): Promise<number> {
  engineArgs.int(bytesPerArray, 'bytesPerArray', 4096, 2 ** 40);
  return loadNative().triad(bytesPerArray, checkThreads(threads));
}
