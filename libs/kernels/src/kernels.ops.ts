/**
 * The native engine kernels one at a time (`ops`: matmul, RMSNorm, RoPE, SwiGLU, embedding, prefill and decode
 * attention, the Q8_0 quantizer), synchronous and checked, for the specs against kernels.reference.ts and for tools. Not the engine
 * step (kernels.ts) nor the training ops (training.ops.ts).
 */
import { engineArgs } from './argument.checks';
import { checkDtype, checkF32, checkI32, checkScaling, isUint8Array } from './kernels';
import { isQuantType, Q8_0_BLOCK_BYTES, QUANT_BLOCKS, QUANT_TYPES } from './kernels.types';
import type { QuantType } from './kernels.types';
import type { Llama3RopeScaling, WeightDtype } from './kernels.types';
import { loadNative, RawAttentionShape } from './native.loader';

export interface AttentionShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  blockSize: number;
}

function checkAttentionShape(shape: AttentionShape, poolLength: number): number {
  engineArgs.int(shape.numHeads, 'numHeads', 1);
  engineArgs.int(shape.numKvHeads, 'numKvHeads', 1, shape.numHeads);
  if (shape.numHeads % shape.numKvHeads !== 0) engineArgs.fail('numKvHeads must divide numHeads');
  engineArgs.int(shape.headDim, 'headDim', 1);
  engineArgs.int(shape.blockSize, 'blockSize', 1);
  const blockFloats = shape.blockSize * shape.numKvHeads * shape.headDim;
  if (poolLength === 0 || poolLength % blockFloats !== 0) engineArgs.fail('KV pool length is not a whole number of blocks');
  return poolLength / blockFloats;
}

function checkTable(table: Int32Array, from: number, count: number, numBlocks: number, what: string): void {
  for (let j = 0; j < count; j++) {
    const b = table[from + j];
    if (!(b >= 0 && b < numBlocks)) engineArgs.fail(`${what}[${j}] = ${b} is not a block id in [0, ${numBlocks})`);
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
    loadNative().setOpsThreads(engineArgs.int(threads, 'threads', 1, 1024));
  },
  /**
   * y (T,out) = init + x (T,in) @ w(out,in)^T + bias; w is rounded to bf16 first when dtype is bf16, and for a
   * quantized dtype quantized (or, given as that type's blocks, used as is) and multiplied with x quantized to int8
   * per 32-block.
   */
  matmul(
    x: Float32Array,
    w: Float32Array | Uint8Array,
    dims: { T: number; in: number; out: number },
    opts: { bias?: Float32Array; dtype?: WeightDtype; init?: Float32Array } = {},
  ): Float32Array {
    const T = engineArgs.int(dims.T, 'T', 1);
    const n = engineArgs.int(dims.in, 'in', 1);
    const o = engineArgs.int(dims.out, 'out', 1);
    checkF32(x, 'x', T * n);
    const q = isQuantType(opts.dtype) ? QUANT_BLOCKS[opts.dtype] : null;
    if (q && n % q.elems !== 0) engineArgs.fail(`${opts.dtype} needs in to be a multiple of ${q.elems}, got ${n}`);
    if (isUint8Array(w)) {
      if (!q) engineArgs.fail('w as a Uint8Array of blocks needs a quantized dtype');
      const bytes = (o * n * q.bytes) / q.elems;
      if (w.length !== bytes) engineArgs.fail(`w has ${w.length} bytes, expected ${bytes}`);
    } else {
      checkF32(w, 'w', o * n);
    }
    if (opts.bias) checkF32(opts.bias, 'bias', o);
    if (opts.init) checkF32(opts.init, 'init', T * o);
    return loadNative().opMatmul(x, w, opts.bias ?? null, T, n, o, checkDtype(opts.dtype ?? 'f32'), opts.init ?? null);
  },
  rmsnorm(x: Float32Array, weight: Float32Array, T: number, C: number, eps: number): Float32Array {
    engineArgs.int(T, 'T', 1);
    engineArgs.int(C, 'C', 1);
    checkF32(x, 'x', T * C);
    checkF32(weight, 'weight', C);
    return loadNative().opRmsnorm(x, weight, T, C, engineArgs.positive(eps, 'eps'));
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
    engineArgs.int(dims.numHeads, 'numHeads', 1);
    engineArgs.int(dims.headDim, 'headDim', 2);
    if (dims.headDim % 2 !== 0) engineArgs.fail('headDim must be even');
    checkF32(x, 'x', T * dims.numHeads * dims.headDim);
    for (let t = 0; t < T; t++) engineArgs.int(positions[t], `positions[${t}]`, 0);
    if (scaling) checkScaling(scaling);
    return loadNative().opRope(x, positions, T, dims.numHeads, dims.headDim, engineArgs.positive(theta, 'theta'), scaling ? { ...scaling } : null);
  },
  swiglu(gate: Float32Array, up: Float32Array, T: number, I: number): Float32Array {
    engineArgs.int(T, 'T', 1);
    engineArgs.int(I, 'I', 1);
    checkF32(gate, 'gate', T * I);
    checkF32(up, 'up', T * I);
    return loadNative().opSwiglu(gate, up, T, I);
  },
  embedding(table: Float32Array, tokens: Int32Array, C: number, dtype: WeightDtype = 'f32'): Float32Array {
    engineArgs.int(C, 'C', 1);
    checkF32(table, 'table');
    if (table.length % C !== 0) engineArgs.fail('table length is not a multiple of C');
    const V = table.length / C;
    checkI32(tokens, 'tokens');
    for (let i = 0; i < tokens.length; i++) engineArgs.int(tokens[i], `tokens[${i}]`, 0, V - 1);
    if (isQuantType(dtype) && C % QUANT_BLOCKS[dtype].elems !== 0) {
      engineArgs.fail(`${dtype} needs C to be a multiple of ${QUANT_BLOCKS[dtype].elems}, got ${C}`);
    }
    return loadNative().opEmbedding(table, tokens, C, checkDtype(dtype));
  },
  /** GGML Q8_0 blocks of x (length a multiple of 32), bit for bit what gguf-py's quantize writes. */
  quantizeQ8_0(x: Float32Array): Uint8Array {
    checkF32(x, 'x');
    if (x.length % 32 !== 0) engineArgs.fail(`quantizeQ8_0 needs a multiple of 32 values, got ${x.length}`);
    return loadNative().opQuantizeQ8_0(x);
  },
  dequantizeQ8_0(blocks: Uint8Array): Float32Array {
    if (!isUint8Array(blocks) || blocks.length % Q8_0_BLOCK_BYTES !== 0) {
      engineArgs.fail(`dequantizeQ8_0 needs a Uint8Array of whole ${Q8_0_BLOCK_BYTES}-byte blocks`);
    }
    return loadNative().opDequantizeQ8_0(blocks);
  },
  /**
   * GGML blocks of x in any quantized type (length a multiple of its block size): Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1
   * bit for bit as gguf-py's reference quantizers; the K-quants by our own search (see quant_k.cpp), in the exact
   * format.
   */
  quantize(type: QuantType, x: Float32Array): Uint8Array {
    if (!isQuantType(type)) engineArgs.fail(`type must be one of ${QUANT_TYPES.join(', ')}`);
    checkF32(x, 'x');
    if (x.length % QUANT_BLOCKS[type].elems !== 0) engineArgs.fail(`${type} needs a multiple of ${QUANT_BLOCKS[type].elems} values, got ${x.length}`);
    return loadNative().opQuantize(type, x);
  },
  /** f32 values of GGML blocks of any quantized type, as ggml's dequantize_row_* computes them. */
  dequantize(type: QuantType, blocks: Uint8Array): Float32Array {
    if (!isQuantType(type)) engineArgs.fail(`type must be one of ${QUANT_TYPES.join(', ')}`);
    if (!isUint8Array(blocks) || blocks.length % QUANT_BLOCKS[type].bytes !== 0) {
      engineArgs.fail(`dequantize ${type} needs a Uint8Array of whole ${QUANT_BLOCKS[type].bytes}-byte blocks`);
    }
    return loadNative().opDequantize(type, blocks);
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
    if (q.length === 0 || q.length % qd !== 0) engineArgs.fail('q length is not a positive multiple of numHeads*headDim');
    const T = q.length / qd;
    engineArgs.int(startPos, 'startPos', 0);
    const need = Math.floor((startPos + T - 1) / shape.blockSize) + 1;
    checkI32(blockTable, 'blockTable');
    if (blockTable.length < need) engineArgs.fail(`blockTable needs ${need} entries for position ${startPos + T - 1}`);
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
    if (N === 0) engineArgs.fail('positions is empty');
    engineArgs.int(maxBlocks, 'maxBlocks', 1);
    checkF32(q, 'q', N * shape.numHeads * shape.headDim);
    checkI32(blockTables, 'blockTables', N * maxBlocks);
    for (let i = 0; i < N; i++) {
      const p = engineArgs.int(positions[i], `positions[${i}]`, 0, maxBlocks * shape.blockSize - 1);
      checkTable(blockTables, i * maxBlocks, Math.floor(p / shape.blockSize) + 1, numBlocks, `blockTables[${i}]`);
    }
    return loadNative().opAttentionDecode(q, kPool, vPool, positions, blockTables, maxBlocks, toRawShape(shape));
  },
};
