/**
 * The checked TypeScript API over the native engine kernels: model and KV cache handles, one engine step
 * (`forward`), block copy-on-write, the bandwidth probe, and single ops for tests. Every argument is validated
 * here with a clear Error before it crosses into C++; the addon itself trusts what it gets.
 * Not the scheduler, sampler or weight loading (libs/model).
 */
import type {
  KvCacheHandle,
  Llama3RopeScaling,
  ModelHandle,
  ModelSpec,
  StepBatch,
  WeightDtype,
  WeightMap,
} from './kernels.types';
import { loadNative, NativeExternal, RawAttentionShape } from './native.loader';

interface ModelState {
  native: NativeExternal;
  spec: ModelSpec;
  dtype: WeightDtype;
  freed: boolean;
}

interface CacheState {
  native: NativeExternal;
  spec: ModelSpec;
  numBlocks: number;
  blockSize: number;
  freed: boolean;
}

const models = new WeakMap<object, ModelState>();
const caches = new WeakMap<object, CacheState>();

export interface CreateModelOptions {
  dtype: WeightDtype;
  /** Native worker threads for this model (the calling thread included); default: hardware cores. */
  threads?: number;
}

export interface NativeInfo {
  simd: 'avx2' | 'portable';
  /** Default thread count (hardware cores). */
  threads: number;
  avx2Supported: boolean;
}

// ---- checks ------------------------------------------------------------------------------------------------

function fail(message: string): never {
  throw new Error(`kernels: ${message}`);
}

function checkInt(value: unknown, name: string, min: number, max = 2 ** 31 - 1): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

function checkPositive(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) fail(`${name} must be a positive number`);
  return value;
}

function checkF32(value: unknown, name: string, length?: number): Float32Array {
  if (!(value instanceof Float32Array)) fail(`${name} must be a Float32Array`);
  if (length !== undefined && value.length !== length) fail(`${name} has ${value.length} elements, expected ${length}`);
  return value;
}

function checkI32(value: unknown, name: string, length?: number): Int32Array {
  if (!(value instanceof Int32Array)) fail(`${name} must be an Int32Array`);
  if (length !== undefined && value.length !== length) fail(`${name} has ${value.length} elements, expected ${length}`);
  return value;
}

function checkDtype(dtype: unknown): WeightDtype {
  if (dtype !== 'f32' && dtype !== 'bf16') fail(`dtype must be 'f32' or 'bf16', got ${String(dtype)}`);
  return dtype;
}

function checkThreads(threads: number | undefined): number {
  return threads === undefined ? 0 : checkInt(threads, 'threads', 1, 1024);
}

function checkScaling(s: Llama3RopeScaling): void {
  checkPositive(s.factor, 'ropeScaling.factor');
  checkPositive(s.lowFreqFactor, 'ropeScaling.lowFreqFactor');
  checkPositive(s.highFreqFactor, 'ropeScaling.highFreqFactor');
  if (s.highFreqFactor <= s.lowFreqFactor) fail('ropeScaling.highFreqFactor must exceed lowFreqFactor');
  checkInt(s.originalMaxPositionEmbeddings, 'ropeScaling.originalMaxPositionEmbeddings', 1);
}

function checkSpec(spec: ModelSpec): void {
  checkInt(spec.vocabSize, 'spec.vocabSize', 1);
  checkInt(spec.hiddenSize, 'spec.hiddenSize', 1);
  checkInt(spec.intermediateSize, 'spec.intermediateSize', 1);
  checkInt(spec.numLayers, 'spec.numLayers', 1);
  checkInt(spec.numHeads, 'spec.numHeads', 1);
  checkInt(spec.numKvHeads, 'spec.numKvHeads', 1, spec.numHeads);
  checkInt(spec.headDim, 'spec.headDim', 2);
  checkInt(spec.maxPositionEmbeddings, 'spec.maxPositionEmbeddings', 1);
  if (spec.numHeads % spec.numKvHeads !== 0) fail('spec.numKvHeads must divide spec.numHeads');
  if (spec.headDim % 2 !== 0) fail('spec.headDim must be even');
  checkPositive(spec.rmsNormEps, 'spec.rmsNormEps');
  checkPositive(spec.ropeTheta, 'spec.ropeTheta');
  if (spec.ropeScaling !== null) checkScaling(spec.ropeScaling);
  if (spec.vocabSize * spec.hiddenSize > 2 ** 31 - 1) fail('spec.vocabSize * spec.hiddenSize is too large');
}

/** Every tensor createModel reads, by Hugging Face name, with its (rows, cols) in HF layout (biases: (n, 1)). */
export function expectedWeightShapes(spec: ModelSpec): Map<string, [number, number]> {
  const C = spec.hiddenSize;
  const qd = spec.numHeads * spec.headDim;
  const kvd = spec.numKvHeads * spec.headDim;
  const I = spec.intermediateSize;
  const shapes = new Map<string, [number, number]>();
  shapes.set('model.embed_tokens.weight', [spec.vocabSize, C]);
  for (let l = 0; l < spec.numLayers; l++) {
    const p = `model.layers.${l}.`;
    shapes.set(`${p}input_layernorm.weight`, [C, 1]);
    shapes.set(`${p}self_attn.q_proj.weight`, [qd, C]);
    shapes.set(`${p}self_attn.k_proj.weight`, [kvd, C]);
    shapes.set(`${p}self_attn.v_proj.weight`, [kvd, C]);
    if (spec.attentionBias) {
      shapes.set(`${p}self_attn.q_proj.bias`, [qd, 1]);
      shapes.set(`${p}self_attn.k_proj.bias`, [kvd, 1]);
      shapes.set(`${p}self_attn.v_proj.bias`, [kvd, 1]);
    }
    shapes.set(`${p}self_attn.o_proj.weight`, [C, qd]);
    shapes.set(`${p}post_attention_layernorm.weight`, [C, 1]);
    shapes.set(`${p}mlp.gate_proj.weight`, [I, C]);
    shapes.set(`${p}mlp.up_proj.weight`, [I, C]);
    shapes.set(`${p}mlp.down_proj.weight`, [C, I]);
  }
  shapes.set('model.norm.weight', [C, 1]);
  if (!spec.tieWordEmbeddings) shapes.set('lm_head.weight', [spec.vocabSize, C]);
  return shapes;
}

function modelState(model: ModelHandle): ModelState {
  const state = models.get(model);
  if (!state) fail('not a model handle from createModel');
  if (state.freed) fail('model was freed');
  return state;
}

function cacheState(cache: KvCacheHandle): CacheState {
  const state = caches.get(cache);
  if (!state) fail('not a KV cache handle from createKvCache');
  if (state.freed) fail('KV cache was freed');
  return state;
}

// ---- models and caches -------------------------------------------------------------------------------------

/** Copies (and for bf16 rounds to nearest even) the weights into one native allocation. */
export function createModel(spec: ModelSpec, weights: WeightMap, opts: CreateModelOptions): ModelHandle {
  checkSpec(spec);
  const dtype = checkDtype(opts.dtype);
  const threads = checkThreads(opts.threads);
  const names: string[] = [];
  const tensors: Float32Array[] = [];
  for (const [name, [rows, cols]] of expectedWeightShapes(spec)) {
    const t = weights.get(name);
    if (t === undefined) fail(`missing weight tensor ${name} (expected shape [${rows}, ${cols}])`);
    checkF32(t, `weight ${name}`);
    if (t.length !== rows * cols) {
      fail(`weight ${name} has ${t.length} elements, expected ${rows}x${cols} = ${rows * cols}`);
    }
    names.push(name);
    tensors.push(t);
  }
  const native = loadNative().modelCreate({ ...spec }, names, tensors, dtype, threads);
  // The branded handle is the native external itself; the brand exists only in the type system.
  const handle = native as ModelHandle;
  models.set(handle, { native, spec: { ...spec }, dtype, freed: false });
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
  loadNative().modelSetThreads(modelState(model).native, checkInt(threads, 'threads', 1, 1024));
}

export interface ModelInfo {
  spec: ModelSpec;
  dtype: WeightDtype;
  threads: number;
  /** Bytes of every weight matrix one decode step streams (all layers and the LM head), in the stored dtype. */
  matmulWeightBytes: number;
}

export function modelInfo(model: ModelHandle): ModelInfo {
  const state = modelState(model);
  const raw = loadNative().modelInfo(state.native);
  return { spec: { ...state.spec }, dtype: state.dtype, threads: raw.threads, matmulWeightBytes: raw.matmulWeightBytes };
}

/** Per layer K and V pools of (numBlocks, blockSize, numKvHeads, headDim) f32, zeroed. */
export function createKvCache(model: ModelHandle, numBlocks: number, blockSize: number): KvCacheHandle {
  const state = modelState(model);
  checkInt(numBlocks, 'numBlocks', 1);
  checkInt(blockSize, 'blockSize', 1);
  const { spec } = state;
  if (numBlocks * blockSize * spec.numKvHeads * spec.headDim > 2 ** 31 - 1) fail('KV cache pool too large');
  const native = loadNative().cacheCreate(state.native, numBlocks, blockSize);
  const handle = native as KvCacheHandle;
  caches.set(handle, { native, spec: state.spec, numBlocks, blockSize, freed: false });
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
  numLayers: number;
  numKvHeads: number;
  headDim: number;
}

export function kvCacheInfo(cache: KvCacheHandle): KvCacheInfo {
  const s = cacheState(cache);
  return {
    numBlocks: s.numBlocks,
    blockSize: s.blockSize,
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
  if (src.length !== dst.length) fail(`copyBlocks: src has ${src.length} ids, dst ${dst.length}`);
  const s = Int32Array.from(src);
  const d = Int32Array.from(dst);
  const sources = new Set<number>();
  for (let i = 0; i < s.length; i++) {
    checkInt(src[i], `copyBlocks src[${i}]`, 0, state.numBlocks - 1);
    sources.add(s[i]);
  }
  const targets = new Set<number>();
  for (let i = 0; i < d.length; i++) {
    checkInt(dst[i], `copyBlocks dst[${i}]`, 0, state.numBlocks - 1);
    if (targets.has(d[i])) fail(`copyBlocks: block ${d[i]} is a destination twice`);
    if (sources.has(d[i])) fail(`copyBlocks: block ${d[i]} is both a source and a destination`);
    targets.add(d[i]);
  }
  loadNative().cacheCopyBlocks(state.native, s, d);
}

/** Copies of one layer's K and V pools, (numBlocks, blockSize, numKvHeads, headDim) each. For tests/debugging. */
export function readKvLayer(cache: KvCacheHandle, layer: number): { k: Float32Array; v: Float32Array } {
  const state = cacheState(cache);
  checkInt(layer, 'layer', 0, state.spec.numLayers - 1);
  return loadNative().cacheReadLayer(state.native, layer);
}

// ---- one engine step ---------------------------------------------------------------------------------------

function checkBatch(spec: ModelSpec, cache: CacheState, batch: StepBatch): void {
  const tokens = checkI32(batch.tokens, 'batch.tokens');
  const T = tokens.length;
  if (T === 0) fail('batch.tokens is empty');
  const positions = checkI32(batch.positions, 'batch.positions', T);
  const seqIndex = checkI32(batch.seqIndex, 'batch.seqIndex', T);
  const tables = checkI32(batch.blockTables, 'batch.blockTables');
  const maxBlocks = checkInt(batch.maxBlocksPerSeq, 'batch.maxBlocksPerSeq', 1);
  if (tables.length === 0 || tables.length % maxBlocks !== 0) {
    fail(`batch.blockTables length ${tables.length} is not a positive multiple of maxBlocksPerSeq ${maxBlocks}`);
  }
  const S = tables.length / maxBlocks;
  const { blockSize, numBlocks } = cache;
  const maxPos = Math.min(maxBlocks * blockSize, numBlocks * blockSize) - 1;
  const seen = new Set<number>();
  const slots = new Set<number>();
  for (let t = 0; t < T; t++) {
    const tok = tokens[t];
    if (tok < 0 || tok >= spec.vocabSize) fail(`batch.tokens[${t}] = ${tok} is outside the vocabulary [0, ${spec.vocabSize})`);
    const s = seqIndex[t];
    if (s < 0 || s >= S) fail(`batch.seqIndex[${t}] = ${s} is outside [0, ${S})`);
    const p = positions[t];
    if (p < 0 || p > maxPos) fail(`batch.positions[${t}] = ${p} is outside [0, ${maxPos}] (block table capacity)`);
    const continues = t > 0 && seqIndex[t - 1] === s;
    if (continues) {
      if (p !== positions[t - 1] + 1) fail(`batch.positions[${t}] = ${p} does not follow ${positions[t - 1]} of the same sequence`);
    } else {
      if (seen.has(s)) fail(`tokens of sequence ${s} are not contiguous in the batch`);
      seen.add(s);
    }
    const lastOfRun = t === T - 1 || seqIndex[t + 1] !== s;
    if (lastOfRun) {
      // Every block the run reads (positions 0..p) must be a real block.
      for (let j = 0; j <= Math.floor(p / blockSize); j++) {
        const block = tables[s * maxBlocks + j];
        if (block < 0 || block >= numBlocks) {
          fail(`batch.blockTables[${s}][${j}] = ${block} is not a block id in [0, ${numBlocks}) but position ${p} needs it`);
        }
      }
    }
    const slot = tables[s * maxBlocks + Math.floor(p / blockSize)] * blockSize + (p % blockSize);
    if (slots.has(slot)) fail(`two tokens of the batch write the same KV slot ${slot}`);
    slots.add(slot);
  }
  for (let i = 0; i < tables.length; i++) {
    const b = tables[i];
    if (b !== -1 && (b < 0 || b >= numBlocks)) fail(`batch.blockTables[${i}] = ${b} is neither -1 nor a block id in [0, ${numBlocks})`);
  }
  const rows = checkI32(batch.logitRows, 'batch.logitRows');
  for (let i = 0; i < rows.length; i++) {
    if (rows[i] < 0 || rows[i] >= T) fail(`batch.logitRows[${i}] = ${rows[i]} is outside [0, ${T})`);
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
    fail('the KV cache was created for a model of a different shape');
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

// ---- machine -----------------------------------------------------------------------------------------------

export function nativeInfo(): NativeInfo {
  const raw = loadNative().info();
  return { simd: raw.simd, threads: raw.hardwareThreads, avx2Supported: raw.avx2Supported };
}

/**
 * STREAM triad bandwidth in GB/s (3 * bytesPerArray per pass, best of 5), over arrays much larger than L3.
 * Default 64 MiB per array.
 */
export function measureTriadGbps(bytesPerArray = 64 * 1024 * 1024, threads?: number): Promise<number> {
  checkInt(bytesPerArray, 'bytesPerArray', 4096, 2 ** 40);
  return loadNative().triad(bytesPerArray, checkThreads(threads));
}

// ---- single ops (tests, tools) -----------------------------------------------------------------------------

export interface AttentionShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  blockSize: number;
}

function checkAttentionShape(shape: AttentionShape, poolLength: number): number {
  checkInt(shape.numHeads, 'numHeads', 1);
  checkInt(shape.numKvHeads, 'numKvHeads', 1, shape.numHeads);
  if (shape.numHeads % shape.numKvHeads !== 0) fail('numKvHeads must divide numHeads');
  checkInt(shape.headDim, 'headDim', 1);
  checkInt(shape.blockSize, 'blockSize', 1);
  const blockFloats = shape.blockSize * shape.numKvHeads * shape.headDim;
  if (poolLength === 0 || poolLength % blockFloats !== 0) fail('KV pool length is not a whole number of blocks');
  return poolLength / blockFloats;
}

function checkTable(table: Int32Array, from: number, count: number, numBlocks: number, what: string): void {
  for (let j = 0; j < count; j++) {
    const b = table[from + j];
    if (!(b >= 0 && b < numBlocks)) fail(`${what}[${j}] = ${b} is not a block id in [0, ${numBlocks})`);
  }
}

function toRawShape(s: AttentionShape): RawAttentionShape {
  return { numHeads: s.numHeads, numKvHeads: s.numKvHeads, headDim: s.headDim, blockSize: s.blockSize };
}

export const ops = {
  /** Forces the portable kernels (true) or goes back to the best the CPU supports; returns the active path. */
  setForcePortable(on: boolean): 'avx2' | 'portable' {
    return loadNative().setForcePortable(on);
  },
  setThreads(threads: number): void {
    loadNative().setOpsThreads(checkInt(threads, 'threads', 1, 1024));
  },
  /** y (T,out) = init + x (T,in) @ w(out,in)^T + bias; w is rounded to bf16 first when dtype is bf16. */
  matmul(
    x: Float32Array,
    w: Float32Array,
    dims: { T: number; in: number; out: number },
    opts: { bias?: Float32Array; dtype?: WeightDtype; init?: Float32Array } = {},
  ): Float32Array {
    const T = checkInt(dims.T, 'T', 1);
    const n = checkInt(dims.in, 'in', 1);
    const o = checkInt(dims.out, 'out', 1);
    checkF32(x, 'x', T * n);
    checkF32(w, 'w', o * n);
    if (opts.bias) checkF32(opts.bias, 'bias', o);
    if (opts.init) checkF32(opts.init, 'init', T * o);
    return loadNative().opMatmul(x, w, opts.bias ?? null, T, n, o, checkDtype(opts.dtype ?? 'f32'), opts.init ?? null);
  },
  rmsnorm(x: Float32Array, weight: Float32Array, T: number, C: number, eps: number): Float32Array {
    checkInt(T, 'T', 1);
    checkInt(C, 'C', 1);
    checkF32(x, 'x', T * C);
    checkF32(weight, 'weight', C);
    return loadNative().opRmsnorm(x, weight, T, C, checkPositive(eps, 'eps'));
  },
  /** Rotates every head of x (T, numHeads*headDim) by its token's position (HF rotate_half). */
  rope(
    x: Float32Array,
    positions: Int32Array,
    dims: { numHeads: number; headDim: number },
    theta: number,
    scaling: Llama3RopeScaling | null = null,
  ): Float32Array {
    const T = checkI32(positions, 'positions').length;
    checkInt(dims.numHeads, 'numHeads', 1);
    checkInt(dims.headDim, 'headDim', 2);
    if (dims.headDim % 2 !== 0) fail('headDim must be even');
    checkF32(x, 'x', T * dims.numHeads * dims.headDim);
    for (let t = 0; t < T; t++) checkInt(positions[t], `positions[${t}]`, 0);
    if (scaling) checkScaling(scaling);
    return loadNative().opRope(x, positions, T, dims.numHeads, dims.headDim, checkPositive(theta, 'theta'), scaling ? { ...scaling } : null);
  },
  swiglu(gate: Float32Array, up: Float32Array, T: number, I: number): Float32Array {
    checkInt(T, 'T', 1);
    checkInt(I, 'I', 1);
    checkF32(gate, 'gate', T * I);
    checkF32(up, 'up', T * I);
    return loadNative().opSwiglu(gate, up, T, I);
  },
  embedding(table: Float32Array, tokens: Int32Array, C: number, dtype: WeightDtype = 'f32'): Float32Array {
    checkInt(C, 'C', 1);
    checkF32(table, 'table');
    if (table.length % C !== 0) fail('table length is not a multiple of C');
    const V = table.length / C;
    checkI32(tokens, 'tokens');
    for (let i = 0; i < tokens.length; i++) checkInt(tokens[i], `tokens[${i}]`, 0, V - 1);
    return loadNative().opEmbedding(table, tokens, C, checkDtype(dtype));
  },
  /**
   * Causal prefill of T tokens of one sequence at positions startPos..startPos+T-1 whose K/V are already in the
   * pools (numBlocks, blockSize, numKvHeads, headDim); q (T, numHeads*headDim) -> (T, numHeads*headDim).
   */
  attentionPrefill(
    q: Float32Array,
    kPool: Float32Array,
    vPool: Float32Array,
    blockTable: Int32Array,
    startPos: number,
    shape: AttentionShape,
  ): Float32Array {
    const numBlocks = checkAttentionShape(shape, checkF32(kPool, 'kPool').length);
    checkF32(vPool, 'vPool', kPool.length);
    const qd = shape.numHeads * shape.headDim;
    checkF32(q, 'q');
    if (q.length === 0 || q.length % qd !== 0) fail('q length is not a positive multiple of numHeads*headDim');
    const T = q.length / qd;
    checkInt(startPos, 'startPos', 0);
    const need = Math.floor((startPos + T - 1) / shape.blockSize) + 1;
    checkI32(blockTable, 'blockTable');
    if (blockTable.length < need) fail(`blockTable needs ${need} entries for position ${startPos + T - 1}`);
    checkTable(blockTable, 0, need, numBlocks, 'blockTable');
    return loadNative().opAttentionPrefill(q, kPool, vPool, blockTable, startPos, T, toRawShape(shape));
  },
  /** One query per sequence: q (N, numHeads*headDim) at positions (N), block tables (N, maxBlocks). */
  attentionDecode(
    q: Float32Array,
    kPool: Float32Array,
    vPool: Float32Array,
    positions: Int32Array,
    blockTables: Int32Array,
    maxBlocks: number,
    shape: AttentionShape,
  ): Float32Array {
    const numBlocks = checkAttentionShape(shape, checkF32(kPool, 'kPool').length);
    checkF32(vPool, 'vPool', kPool.length);
    const N = checkI32(positions, 'positions').length;
    if (N === 0) fail('positions is empty');
    checkInt(maxBlocks, 'maxBlocks', 1);
    checkF32(q, 'q', N * shape.numHeads * shape.headDim);
    checkI32(blockTables, 'blockTables', N * maxBlocks);
    for (let i = 0; i < N; i++) {
      const p = checkInt(positions[i], `positions[${i}]`, 0, maxBlocks * shape.blockSize - 1);
      checkTable(blockTables, i * maxBlocks, Math.floor(p / shape.blockSize) + 1, numBlocks, `blockTables[${i}]`);
    }
    return loadNative().opAttentionDecode(q, kPool, vPool, positions, blockTables, maxBlocks, toRawShape(shape));
  },
};
