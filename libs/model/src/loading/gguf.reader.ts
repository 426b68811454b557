/**
 * Reads a llama.cpp GGUF file (architectures `llama`, `qwen2`, `qwen3`, `smollm3`, `phi3`, `gemma2` and `gemma3`) into
 * the same ModelSpec + WeightMap, with HF names and HF layout, as a Hugging Face checkpoint: F32/F16/BF16 widened, Q8_0
 * kept as its blocks (for the engine, `servingWeights`) and widened only when read through `weights` (training needs
 * f32), and for `llama` the Q/K row permutation of convert_hf_to_gguf.py undone (on whole rows of blocks for Q8_0);
 * Phi-3's fused attn_qkv and ffn_up (gate and up rows) are split, and its LongRoPE factors read from
 * rope_factors_{short,long}. Gemma's norm weights are used as stored: the converter already wrote 1 + w, which is what
 * the HF loader hands the engine too, so both sources give one spec (normWeightOffset: the family's HF convention).
 * The header is parsed strictly by gguf-header.parser (@huggingface/gguf zero-fills past the end of a local file, so it
 * parses truncated headers as garbage; only its type-name enum is used). Tokenizer metadata is exposed raw (GgufVocab);
 * no tokenizer is built from it.
 */
import type { FileHandle } from 'node:fs/promises';
import { GGMLQuantizationType } from '@huggingface/gguf';
import { isQuantType, QUANT_BLOCKS } from '@flywheel/kernels';
import type { Llama3RopeScaling, LongRopeScaling, ModelSpec, QuantTensor, QuantType, ServingWeightMap, WeightMap } from '@flywheel/kernels';
import { bf16ArrayToF32, f16ArrayToF32 } from './half-float.codec';
import { ModelLoadError } from './model-load.error';
import { gemmaSpecFields, slidingAttentionFields } from './model-config.schema';
import type { SupportedArchitecture } from './model-config.schema';
import { openForRead, readExactly } from './checkpoint-file.io';
import { parseGgufHeader } from './gguf-header.parser';
import { llama3ScalingFromRopeFactors } from './rope-freqs';
import type { GgufHeader, GgufTensorInfo, GgufValue } from './gguf-header.parser';
import { buildWeightMap } from './weight-map.validator';
import { FUSED_PROJECTIONS, splitFusedProjections } from './fused-projections';
import type { ShapedTensor } from './weight-map.validator';
import { dequantizeBlocks, dequantizeQ8_0, WideningWeightMap } from './widening-weight-map';

export { dequantizeQ8_0 };

/** Raw `tokenizer.ggml.*` metadata. */
export interface GgufVocab {
  /** `tokenizer.ggml.model`: "llama" (SentencePiece), "gpt2" (byte-level BPE), ... */
  model: string;
  /** `tokenizer.ggml.pre`: the pre-tokenizer of a BPE vocabulary ("gpt-2", "llama-bpe", "qwen2", "smollm", ...). */
  pre: string | null;
  tokens: string[];
  scores: number[] | null;
  tokenTypes: number[] | null;
  merges: string[] | null;
  bosTokenId: number | null;
  eosTokenId: number | null;
  unkTokenId: number | null;
  padTokenId: number | null;
  addBosToken: boolean | null;
  /** `tokenizer.chat_template`, used when no HF tokenizer_config supplies one. */
  chatTemplate: string | null;
  /**
   * `tokenizer.ggml.add_space_prefix`: whether a SentencePiece vocabulary prepends "▁" to the text (llama.cpp's
   * default, true, when absent; Gemma's files say false). Absent here when the file does not say.
   */
  addSpacePrefix?: boolean;
  /** `general.architecture`, which some families' tokenizer rules key on (Phi-3's markers eat the whitespace after them). */
  architecture?: string;
}

export type GgufTensorDtype = 'f32' | 'f16' | 'bf16' | QuantType;

export interface GgufModel {
  file: string;
  architecture: SupportedArchitecture;
  /** `general.architecture` as written ("llama", "qwen2"). */
  ggufArchitecture: string;
  name: string | null;
  spec: ModelSpec;
  /** Every tensor as f32; a quantized tensor is widened the first time it is read. */
  weights: WeightMap;
  /** The same tensors with quantized ones (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) as their blocks, for the serving engine. */
  servingWeights: ServingWeightMap;
  /** On-disk dtype of each HF-named tensor, before widening to f32. */
  tensorDtypes: ReadonlyMap<string, GgufTensorDtype>;
  vocab: GgufVocab | null;
}

const ARCHITECTURES: Record<string, { hf: SupportedArchitecture; permutedQk: boolean }> = {
  // convert_hf_to_gguf.py's LlamaModel (Llama and Mistral) permutes q/k rows for llama.cpp's interleaved RoPE.
  llama: { hf: 'LlamaForCausalLM', permutedQk: true },
  // Qwen2Model uses NEOX RoPE (rotate_half) in llama.cpp and keeps HF's row order.
  qwen2: { hf: 'Qwen2ForCausalLM', permutedQk: false },
  // Qwen3Model: NEOX RoPE as Qwen2, plus per-head q/k norms (attn_q_norm, attn_k_norm).
  qwen3: { hf: 'Qwen3ForCausalLM', permutedQk: false },
  // SmolLM3Model is a LlamaModel (permuted q/k); llama.cpp hard-codes its NoPE layers: every 4th (n_no_rope_layer_step).
  smollm3: { hf: 'SmolLM3ForCausalLM', permutedQk: true },
  // Phi3MiniModel: NEOX RoPE, HF's fused qkv_proj as attn_qkv and gate_up_proj as ffn_up (gate rows, then up rows).
  phi3: { hf: 'Phi3ForCausalLM', permutedQk: false },
  // Gemma2Model / Gemma3Model: NEOX RoPE, HF's row order, sandwich norms under their own names, norms stored as 1 + w.
  gemma2: { hf: 'Gemma2ForCausalLM', permutedQk: false },
  gemma3: { hf: 'Gemma3ForCausalLM', permutedQk: false },
};
const SUPPORTED_GGUF_ARCHITECTURES = 'llama, qwen2, qwen3, smollm3, phi3, gemma2 or gemma3';

/** GGML type → on-disk bytes of `n` elements, for the types we can load. */
const LOADABLE_TYPES = new Map<number, { dtype: GgufTensorDtype; bytes: (n: number) => number; blockSize: number }>([
  [GGMLQuantizationType.F32, { dtype: 'f32', bytes: (n) => n * 4, blockSize: 1 }],
  [GGMLQuantizationType.F16, { dtype: 'f16', bytes: (n) => n * 2, blockSize: 1 }],
  [GGMLQuantizationType.BF16, { dtype: 'bf16', bytes: (n) => n * 2, blockSize: 1 }],
  // GGML blocks (QUANT_BLOCKS): Q8_0 is an f16 scale then 32 int8; Q4_0 an f16 scale then 32 nibbles; the K-quants
  // super-blocks of 256 with 6-bit (Q4_K, Q5_K) or int8 (Q6_K) sub-block scales.
  ...(
    [
      [GGMLQuantizationType.Q8_0, 'q8_0'],
      [GGMLQuantizationType.Q4_0, 'q4_0'],
      [GGMLQuantizationType.Q4_1, 'q4_1'],
      [GGMLQuantizationType.Q5_0, 'q5_0'],
      [GGMLQuantizationType.Q5_1, 'q5_1'],
      [GGMLQuantizationType.Q4_K, 'q4_k'],
      [GGMLQuantizationType.Q5_K, 'q5_k'],
      [GGMLQuantizationType.Q6_K, 'q6_k'],
    ] as const
  ).map(
    ([type, dtype]) =>
      [type, { dtype, bytes: (n: number) => (n / QUANT_BLOCKS[dtype].elems) * QUANT_BLOCKS[dtype].bytes, blockSize: QUANT_BLOCKS[dtype].elems }] as const,
  ),
]);

const GLOBAL_NAMES: Record<string, string> = {
  'token_embd.weight': 'model.embed_tokens.weight',
  'output_norm.weight': 'model.norm.weight',
  'output.weight': 'lm_head.weight',
};
const BLOCK_NAMES: Record<string, string> = {
  'attn_norm.weight': 'input_layernorm.weight',
  'attn_q.weight': 'self_attn.q_proj.weight',
  'attn_q.bias': 'self_attn.q_proj.bias',
  'attn_k.weight': 'self_attn.k_proj.weight',
  'attn_k.bias': 'self_attn.k_proj.bias',
  'attn_v.weight': 'self_attn.v_proj.weight',
  'attn_v.bias': 'self_attn.v_proj.bias',
  'attn_output.weight': 'self_attn.o_proj.weight',
  'attn_qkv.weight': 'self_attn.qkv_proj.weight',
  'attn_q_norm.weight': 'self_attn.q_norm.weight',
  'attn_k_norm.weight': 'self_attn.k_norm.weight',
  'ffn_norm.weight': 'post_attention_layernorm.weight',
  'ffn_gate.weight': 'mlp.gate_proj.weight',
  'ffn_up.weight': 'mlp.up_proj.weight',
  'ffn_down.weight': 'mlp.down_proj.weight',
};

/**
 * Gemma's sandwich norms (llama.cpp's LLM_TENSOR_ATTN_POST_NORM, FFN_NORM, FFN_POST_NORM): its ffn_norm is the MLP's
 * input norm, pre_feedforward_layernorm, and post_attention_layernorm normalises the attention output.
 */
const GEMMA_BLOCK_NAMES: Record<string, string> = {
  ...BLOCK_NAMES,
  'post_attention_norm.weight': 'post_attention_layernorm.weight',
  'ffn_norm.weight': 'pre_feedforward_layernorm.weight',
  'post_ffw_norm.weight': 'post_feedforward_layernorm.weight',
};

function isGemmaArch(ggufArch: string | undefined): boolean {
  return ggufArch === 'gemma2' || ggufArch === 'gemma3';
}

/**
 * llama.cpp tensor name → HF name, or null if it is not a tensor we know. `ggufArch` (general.architecture; default
 * "llama") picks Gemma's norm names.
 */
export function ggufToHfTensorName(name: string, ggufArch?: string): string | null {
  const global = GLOBAL_NAMES[name];
  if (global !== undefined) return global;
  const m = /^blk\.(\d+)\.(.+)$/.exec(name);
  if (m === null) return null;
  const local = (isGemmaArch(ggufArch) ? GEMMA_BLOCK_NAMES : BLOCK_NAMES)[m[2]];
  return local === undefined ? null : `model.layers.${m[1]}.${local}`;
}

/**
 * Undoes convert_hf_to_gguf.py's `permute`: GGUF row h·hd + 2i + t holds HF row h·hd + t·hd/2 + i
 * (t ∈ {0,1}, i < hd/2), i.e. interleaved RoPE pairs back to rotate_half halves. `data` is (nHeads·hd, rowLen).
 */
export function unpermuteQkRows(data: Float32Array, nHeads: number, headDim: number, rowLen: number): Float32Array {
  const out = new Float32Array(data.length);
  const half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      for (let t = 0; t < 2; t++) {
        const src = (h * headDim + 2 * i + t) * rowLen;
        const dst = (h * headDim + t * half + i) * rowLen;
        out.set(data.subarray(src, src + rowLen), dst);
      }
    }
  }
  return out;
}

/** The forward direction (HF → GGUF), as convert_hf_to_gguf.py applies it; the inverse of unpermuteQkRows. */
export function permuteQkRows(data: Float32Array, nHeads: number, headDim: number, rowLen: number): Float32Array {
  const out = new Float32Array(data.length);
  const half = headDim / 2;
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      for (let t = 0; t < 2; t++) {
        const dst = (h * headDim + 2 * i + t) * rowLen;
        const src = (h * headDim + t * half + i) * rowLen;
        out.set(data.subarray(src, src + rowLen), dst);
      }
    }
  }
  return out;
}

/** unpermuteQkRows over GGML blocks: a row of `cols` weights is whole blocks, so rows move as bytes. */
function unpermuteQkBlockRows(t: QuantTensor, nHeads: number, headDim: number, cols: number): QuantTensor {
  const rowBytes = (cols / QUANT_BLOCKS[t.dtype].elems) * QUANT_BLOCKS[t.dtype].bytes;
  const out = new Uint8Array(t.blocks.length);
  const half = headDim / 2;
  for (let r = 0; r < nHeads * headDim; r++) {
    const h = Math.floor(r / headDim);
    const i = (r % headDim) >> 1;
    const hfRow = h * headDim + (r % 2) * half + i;
    out.set(t.blocks.subarray(r * rowBytes, (r + 1) * rowBytes), hfRow * rowBytes);
  }
  return { dtype: t.dtype, blocks: out };
}

/** Reads a GGUF file's header, hyperparameters, vocabulary metadata and every tensor. */
export async function readGguf(file: string): Promise<GgufModel> {
  const fh = await openForRead(file);
  try {
    return await readGgufFrom(fh, file);
  } finally {
    await fh.close();
  }
}

/**
 * Llama 3.x files: `rope_freqs.weight` (head_dim / 2 divisors llama.cpp computed from the llama3 rope_scaling) as the
 * scaling parameters the engine takes (rope-freqs.ts); null without the tensor.
 */
async function ropeScalingOf(
  fh: FileHandle,
  file: string,
  info: GgufTensorInfo | undefined,
  dataOffset: number,
  headDim: number,
  theta: number,
  fail: (message: string) => never,
): Promise<Llama3RopeScaling | null> {
  if (info === undefined) return null;
  if (info.dims.length !== 1 || info.dims[0] !== headDim / 2) fail(`rope_freqs.weight has dims [${info.dims.join(', ')}], expected [${headDim / 2}]`);
  const factors = await readGgufTensor(fh, file, info, dataOffset);
  try {
    return llama3ScalingFromRopeFactors(factors, headDim, theta);
  } catch (err) {
    return fail(`rope_freqs.weight: ${err instanceof Error ? err.message : String(err)}`);
  }
}

const ROPE_FACTOR_TENSORS = ['rope_factors_short.weight', 'rope_factors_long.weight'];

/**
 * Phi-3 LongRoPE as convert_hf_to_gguf.py's Phi3MiniModel writes it: rope_factors_short/long.weight (rotated dims / 2
 * divisors each), `rope.scaling.original_context_length` and `rope.scaling.attn_factor`; null without the tensors.
 */
async function longRopeOf(
  fh: FileHandle,
  file: string,
  infos: ReadonlyMap<string, GgufTensorInfo>,
  dataOffset: number,
  ropeDims: number,
  num: (key: string, fallback?: number) => number,
  fail: (message: string) => never,
): Promise<LongRopeScaling | null> {
  const [short, long] = ROPE_FACTOR_TENSORS.map((n) => infos.get(n));
  if (short === undefined && long === undefined) return null;
  const factors = async (info: GgufTensorInfo | undefined, name: string): Promise<number[]> => {
    if (info === undefined) return fail(`GGUF has ${name === ROPE_FACTOR_TENSORS[0] ? ROPE_FACTOR_TENSORS[1] : ROPE_FACTOR_TENSORS[0]} but no ${name}`);
    if (info.dims.length !== 1 || info.dims[0] !== ropeDims / 2) fail(`${name} has dims [${info.dims.join(', ')}], expected [${ropeDims / 2}]`);
    return [...(await readGgufTensor(fh, file, info, dataOffset))].map(shortestF32);
  };
  return {
    shortFactor: await factors(short, ROPE_FACTOR_TENSORS[0]),
    longFactor: await factors(long, ROPE_FACTOR_TENSORS[1]),
    originalMaxPositionEmbeddings: num('rope.scaling.original_context_length'),
    attentionFactor: Math.fround(num('rope.scaling.attn_factor', 1)),
  };
}

async function readGgufFrom(fh: FileHandle, file: string): Promise<GgufModel> {
  const header = await parseGgufHeader(fh, file);
  const meta = header.metadata;
  const fail = (message: string): never => {
    throw new ModelLoadError(message, file);
  };

  const ggufArch = meta.get('general.architecture');
  if (typeof ggufArch !== 'string') return fail('GGUF has no general.architecture');
  const arch = ARCHITECTURES[ggufArch];
  if (arch === undefined) {
    return fail(
      `unsupported GGUF architecture "${ggufArch}"; Flywheel serves Llama-family and Gemma models (general.architecture ${SUPPORTED_GGUF_ARCHITECTURES})`,
    );
  }

  const num = (key: string, fallback?: number): number => {
    const v = meta.get(`${ggufArch}.${key}`);
    if (typeof v === 'number' && Number.isFinite(v)) return v;
    if (typeof v === 'bigint' && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
    if (v === undefined && fallback !== undefined) return fallback;
    return fail(`GGUF metadata ${ggufArch}.${key} is ${v === undefined ? 'missing' : `not a number (${String(v)})`}`);
  };

  const infos = new Map<string, GgufTensorInfo>();
  for (const info of header.tensors) {
    if (infos.has(info.name)) fail(`tensor "${info.name}" appears twice`);
    infos.set(info.name, info);
  }
  const scalingType = meta.get(`${ggufArch}.rope.scaling.type`);
  if (scalingType !== undefined && scalingType !== 'none' && scalingType !== 'linear') {
    fail(`unsupported GGUF rope scaling type "${String(scalingType)}"; Flywheel reads "none" and "linear"`);
  }

  const embd = infos.get('token_embd.weight') ?? fail('GGUF has no token_embd.weight');
  const hiddenSize = num('embedding_length');
  const numHeads = num('attention.head_count');
  const numKvHeads = num('attention.head_count_kv', numHeads);
  const headDim = num('attention.key_length', hiddenSize / numHeads);
  const ropeDims = num('rope.dimension_count', headDim);
  if (ropeDims !== headDim && ggufArch !== 'phi3') {
    fail(`rope.dimension_count ${ropeDims} differs from head_dim ${headDim}; partial RoPE is read for phi3 only`);
  }
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) fail(`head_dim ${headDim} must be an even integer`);
  if (!Number.isInteger(ropeDims) || ropeDims % 2 !== 0 || ropeDims < 2 || ropeDims > headDim) {
    fail(`rope.dimension_count ${ropeDims} must be even and within 2..head_dim ${headDim}`);
  }
  const numLayers = num('block_count');
  const longRope = await longRopeOf(fh, file, infos, header.dataOffset, ropeDims, num, fail);

  const ropeTheta = shortestF32(num('rope.freq_base', 10000));
  const gemma = isGemmaArch(ggufArch) ? gemmaFieldsOf(meta, ggufArch, { hiddenSize, numHeads, headDim, numLayers, ropeTheta }, num, fail) : null;
  const spec: ModelSpec = {
    vocabSize: num('vocab_size', embd.dims[1] ?? 0),
    hiddenSize,
    intermediateSize: num('feed_forward_length'),
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: shortestF32(num('attention.layer_norm_rms_epsilon')),
    ropeTheta,
    ropeScaling: await ropeScalingOf(fh, file, infos.get('rope_freqs.weight'), header.dataOffset, headDim, ropeTheta, fail),
    tieWordEmbeddings: !infos.has('output.weight'),
    attentionBias: infos.has('blk.0.attn_q.bias'),
    maxPositionEmbeddings: num('context_length'),
    ...(infos.has('blk.0.attn_q_norm.weight') ? { qkNorm: true } : {}),
    ...(ropeDims < headDim ? { rotaryDim: ropeDims } : {}),
    ...(ggufArch === 'smollm3' && numLayers >= 4
      ? { noRopeLayers: Array.from({ length: numLayers }, (_, i) => i).filter((i) => (i + 1) % 4 === 0) }
      : {}),
    ...(longRope !== null ? { longRope } : {}),
    // llama.cpp's freq_scale = 1 / factor, on every layer but Gemma 3's sliding ones (their freq_scale_swa is 1).
    ...(scalingType === 'linear' && num('rope.scaling.factor') !== 1 ? { ropeLinearFactor: shortestF32(num('rope.scaling.factor')) } : {}),
    ...(gemma ?? {}),
  };

  checkTensorRanges(header, file);
  const tensors = new Map<string, ShapedTensor<Float32Array | QuantTensor>>();
  const tensorDtypes = new Map<string, GgufTensorDtype>();
  for (const [ggufName, info] of infos) {
    if (ggufName === 'rope_freqs.weight' || ROPE_FACTOR_TENSORS.includes(ggufName)) continue; // read into spec above
    let hfName = ggufToHfTensorName(ggufName, ggufArch) ?? fail(`unknown tensor "${ggufName}" for a ${ggufArch} model`);
    // Phi-3's ffn_up holds gate and up rows (llama.cpp's fused SwiGLU) when the block has no ffn_gate.
    if (ggufArch === 'phi3' && hfName.endsWith('.mlp.up_proj.weight') && !infos.has(ggufName.replace('ffn_up', 'ffn_gate'))) {
      hfName = hfName.replace('mlp.up_proj', 'mlp.gate_up_proj');
    }
    const data = await readGgufTensorKeepingBlocks(fh, file, info, header.dataOffset);
    // GGUF dims run fastest-first (ne[0] = in_features); HF shapes run slowest-first.
    const shape = [...info.dims].reverse();
    let hfData = data;
    if (arch.permutedQk && /self_attn\.[qk]_proj\./.test(hfName)) {
      const heads = hfName.includes('.q_proj.') ? spec.numHeads : spec.numKvHeads;
      if (shape[0] !== heads * headDim) fail(`tensor "${ggufName}" has ${shape[0]} rows, expected ${heads} heads × ${headDim}`);
      const cols = shape.length === 2 ? shape[1] : 1;
      hfData = data instanceof Float32Array ? unpermuteQkRows(data, heads, headDim, cols) : unpermuteQkBlockRows(data, heads, headDim, cols);
    }
    tensors.set(hfName, { shape, data: hfData });
    tensorDtypes.set(hfName, loadableType(info, file).dtype);
  }

  // llama.cpp's llama2.c converter (and some others) store the tied classifier as a second copy; keep it tied.
  const head = tensors.get('lm_head.weight');
  const embed = tensors.get('model.embed_tokens.weight');
  if (head !== undefined && embed !== undefined && sameContents(head.data, embed.data)) {
    tensors.delete('lm_head.weight');
    tensorDtypes.delete('lm_head.weight');
    spec.tieWordEmbeddings = true;
  }

  for (const [name, dtype] of [...tensorDtypes]) {
    const [, prefix = '', local = ''] = /^(model\.layers\.\d+\.)(.+)$/.exec(name) ?? [];
    const parts = FUSED_PROJECTIONS.find(([fused]) => fused === local)?.[1];
    if (parts === undefined) continue;
    tensorDtypes.delete(name);
    for (const part of parts) tensorDtypes.set(prefix + part, dtype);
  }
  const servingWeights = buildWeightMap(splitFusedProjections(tensors, spec, file), { spec, scoreLabels: null }, file);
  const name = meta.get('general.name');
  return {
    file,
    architecture: arch.hf,
    ggufArchitecture: ggufArch,
    name: typeof name === 'string' ? name : null,
    spec,
    weights: new WideningWeightMap(servingWeights),
    servingWeights,
    tensorDtypes,
    vocab: readVocab(meta),
  };
}

/**
 * The Gemma fields of a gemma2 / gemma3 file's spec, as llama.cpp's load_hparams reads them: `attention.sliding_window`
 * (Gemma 2 default 4096; Gemma 3 without it, or with 0, attends fully), the sliding layers from
 * `attention.sliding_window_pattern` (a period, or one flag per layer) or llama.cpp's fixed periods (Gemma 2: every
 * 2nd layer full; Gemma 3: every 6th), the sliding layers' RoPE base `rope.freq_base_swa` (Gemma 3 default 1e4; Gemma 2:
 * rope.freq_base), Gemma 2's soft caps (defaults 50 and 30; llama.cpp never caps Gemma 3's scores) and the query scale
 * 1/sqrt(key_length), or 1/sqrt(hidden / heads) for the 27B models llama.cpp recognises by their 46 (Gemma 2) or 62
 * (Gemma 3) layers, as their query_pre_attn_scalar says.
 */
function gemmaFieldsOf(
  meta: ReadonlyMap<string, GgufValue>,
  ggufArch: string,
  dims: { hiddenSize: number; numHeads: number; headDim: number; numLayers: number; ropeTheta: number },
  num: (key: string, fallback?: number) => number,
  fail: (message: string) => never,
): Partial<ModelSpec> {
  const generation = ggufArch === 'gemma2' ? 2 : 3;
  const L = dims.numLayers;
  const windowKey = meta.get(`${ggufArch}.attention.sliding_window`);
  const window = generation === 2 ? num('attention.sliding_window', 4096) : windowKey === undefined ? 0 : num('attention.sliding_window');
  const patternKey = `${ggufArch}.attention.sliding_window_pattern`;
  const pattern = meta.get(patternKey);
  let sliding: boolean[];
  if (Array.isArray(pattern)) {
    if (pattern.length < L || pattern.some((p) => typeof p !== 'boolean')) fail(`GGUF metadata ${patternKey} must hold a boolean per layer (${L})`);
    sliding = pattern.slice(0, L).map((p) => p === true);
  } else {
    const period = num('attention.sliding_window_pattern', generation === 2 ? 2 : 6);
    if (!Number.isInteger(period) || period < 1) fail(`GGUF metadata ${patternKey} is ${period}; expected a positive period`);
    // llama.cpp's set_swa_pattern: layer il slides when il % period < period - 1.
    sliding = Array.from({ length: L }, (_, i) => i % period < period - 1);
  }
  const is27B = L === (generation === 2 ? 46 : 62);
  const ropeLocal = shortestF32(num('rope.freq_base_swa', generation === 3 ? 10000 : dims.ropeTheta));
  const positive = (key: string, fallback: number | null): number | null => {
    const v = meta.has(`${ggufArch}.${key}`) ? num(key) : fallback;
    return v !== null && v > 0 ? shortestF32(v) : null;
  };
  return gemmaSpecFields({
    generation,
    hiddenSize: dims.hiddenSize,
    queryPreAttnScalar: is27B ? Math.trunc(dims.hiddenSize / dims.numHeads) : dims.headDim,
    attnSoftcap: generation === 2 ? positive('attn_logit_softcapping', 50) : null,
    finalSoftcap: positive('final_logit_softcapping', generation === 2 ? 30 : null),
    ropeLocalTheta: generation === 3 || ropeLocal !== dims.ropeTheta ? ropeLocal : null,
    sliding: slidingAttentionFields(window > 0 ? window : null, sliding),
  });
}

function loadableType(info: GgufTensorInfo, file: string) {
  const kind = LOADABLE_TYPES.get(info.type);
  if (kind === undefined) {
    const typeName = GGMLQuantizationType[info.type] ?? `type ${info.type}`;
    throw new ModelLoadError(`tensor "${info.name}" has GGML type ${typeName}; Flywheel loads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K`, file);
  }
  return kind;
}

/** Every tensor's bytes must lie inside the file and not overlap another's. */
function checkTensorRanges(header: GgufHeader, file: string): void {
  const ranges = header.tensors.map((info) => {
    const kind = loadableType(info, file);
    const n = info.dims.reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(n)) throw new ModelLoadError(`tensor "${info.name}" has an impossible shape`, file);
    if (info.dims[0] % kind.blockSize !== 0) {
      throw new ModelLoadError(`tensor "${info.name}" (${kind.dtype}) has ne[0] ${info.dims[0]}, not a multiple of ${kind.blockSize}`, file);
    }
    const begin = header.dataOffset + info.offset;
    const end = begin + kind.bytes(n);
    if (end > header.fileSize) {
      throw new ModelLoadError(
        `tensor "${info.name}" needs bytes ${begin}..${end} but the file is ${header.fileSize} bytes (truncated?)`,
        file,
      );
    }
    return { name: info.name, begin, end };
  });
  ranges.sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i].begin < ranges[i - 1].end) {
      throw new ModelLoadError(`tensors "${ranges[i - 1].name}" and "${ranges[i].name}" overlap`, file);
    }
  }
}

async function readGgufTensor(fh: FileHandle, file: string, info: GgufTensorInfo, dataOffset: number): Promise<Float32Array> {
  const kind = loadableType(info, file);
  const n = info.dims.reduce((a, b) => a * b, 1);
  const bytes = await readExactly(fh, file, dataOffset + info.offset, kind.bytes(n));
  switch (kind.dtype) {
    case 'f32':
      return new Float32Array(bytes.buffer, 0, n);
    case 'f16':
      return f16ArrayToF32(new Uint16Array(bytes.buffer, 0, n));
    case 'bf16':
      return bf16ArrayToF32(new Uint16Array(bytes.buffer, 0, n));
    case 'q8_0':
      return dequantizeQ8_0(bytes, n);
    default:
      return dequantizeBlocks({ dtype: kind.dtype, blocks: bytes });
  }
}

/** F32/F16/BF16 widened to f32; quantized tensors kept as their blocks. */
async function readGgufTensorKeepingBlocks(
  fh: FileHandle,
  file: string,
  info: GgufTensorInfo,
  dataOffset: number,
): Promise<Float32Array | QuantTensor> {
  const kind = loadableType(info, file);
  if (!isQuantType(kind.dtype)) return readGgufTensor(fh, file, info, dataOffset);
  const n = info.dims.reduce((a, b) => a * b, 1);
  return { dtype: kind.dtype, blocks: await readExactly(fh, file, dataOffset + info.offset, kind.bytes(n)) };
}

/** GGUF stores these as f32; report the shortest decimal that is the same f32 (1e-5, not 9.99999974e-6). */
function shortestF32(x: number): number {
  for (let p = 1; p <= 9; p++) {
    const candidate = Number(x.toPrecision(p));
    if (Math.fround(candidate) === Math.fround(x)) return candidate;
  }
  return x;
}

/** Bit-identical tensors of one storage type (a quantized head is a copy of the embedding only block for block). */
function sameContents(a: Float32Array | QuantTensor, b: Float32Array | QuantTensor): boolean {
  if (a instanceof Float32Array !== b instanceof Float32Array) return false;
  if (!(a instanceof Float32Array) && !(b instanceof Float32Array) && a.dtype !== b.dtype) return false;
  return Buffer.compare(bytesOf(a), bytesOf(b)) === 0;
}

function bytesOf(t: Float32Array | QuantTensor): Uint8Array {
  return t instanceof Float32Array ? new Uint8Array(t.buffer, t.byteOffset, t.byteLength) : t.blocks;
}

/** Only the tokenizer metadata of a GGUF file (vocab-only files, such as llama.cpp's tokenizer test files, included). */
export async function readGgufVocab(file: string): Promise<GgufVocab | null> {
  const fh = await openForRead(file);
  try {
    return readVocab((await parseGgufHeader(fh, file)).metadata);
  } finally {
    await fh.close();
  }
}

function readVocab(meta: ReadonlyMap<string, GgufValue>): GgufVocab | null {
  const model = meta.get('tokenizer.ggml.model');
  const tokens = meta.get('tokenizer.ggml.tokens');
  if (typeof model !== 'string' || !Array.isArray(tokens)) return null;
  const numbers = (key: string): number[] | null => {
    const v = meta.get(key);
    return Array.isArray(v) ? v.map(Number) : null;
  };
  const id = (key: string): number | null => {
    const v = meta.get(key);
    // 0xFFFFFFFF is llama.cpp's "no such token".
    return (typeof v === 'number' || typeof v === 'bigint') && Number(v) !== 0xffffffff ? Number(v) : null;
  };
  const merges = meta.get('tokenizer.ggml.merges');
  const addBos = meta.get('tokenizer.ggml.add_bos_token');
  const chatTemplate = meta.get('tokenizer.chat_template');
  const pre = meta.get('tokenizer.ggml.pre');
  const addSpacePrefix = meta.get('tokenizer.ggml.add_space_prefix');
  const architecture = meta.get('general.architecture');
  return {
    model,
    pre: typeof pre === 'string' ? pre : null,
    tokens: tokens.map(String),
    scores: numbers('tokenizer.ggml.scores'),
    tokenTypes: numbers('tokenizer.ggml.token_type'),
    merges: Array.isArray(merges) ? merges.map(String) : null,
    bosTokenId: id('tokenizer.ggml.bos_token_id'),
    eosTokenId: id('tokenizer.ggml.eos_token_id'),
    unkTokenId: id('tokenizer.ggml.unknown_token_id'),
    padTokenId: id('tokenizer.ggml.padding_token_id'),
    addBosToken: typeof addBos === 'boolean' ? addBos : null,
    chatTemplate: typeof chatTemplate === 'string' ? chatTemplate : null,
    ...(typeof addSpacePrefix === 'boolean' ? { addSpacePrefix } : {}),
    ...(typeof architecture === 'string' ? { architecture } : {}),
  };
}
