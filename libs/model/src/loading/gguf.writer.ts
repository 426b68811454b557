/**
 * Writes a Llama, Qwen3, SmolLM3, Phi-3 or Gemma model (ModelSpec + ServingWeightMap, HF names and layout) as a GGUF v3
 * file laid out as llama.cpp's convert_hf_to_gguf.py writes one: arch "llama" and "smollm3" (q/k rows permuted for
 * interleaved RoPE), "qwen3" (HF row order, q/k norms), "phi3" (HF row order, q/k/v fused into attn_qkv and gate/up
 * into ffn_up, LongRoPE factors as rope_factors_long/short, partial rotary as rope.dimension_count), "gemma2" or
 * "gemma3" (HF row order, norms as the 1 + w the weights already hold), their metadata keys and value types, tensor
 * data 32-byte aligned, f32 / bf16 / Q8_0 / Q4_0 / Q4_K / Q5_K / Q6_K tensors as given (no quantizing here),
 * optionally a tokenizer (a file's own, or a synthetic SentencePiece vocab so llama.cpp loads a benchmark model of any
 * vocab size). A spec llama.cpp would run differently is refused. Not a reader (gguf.reader), not a quantizer
 * (ops.quantize).
 */
import { open, rename, rm } from 'node:fs/promises';
import { expectedWeightShapes, isQuantType, QUANT_BLOCKS, type ModelSpec, type QuantTensor, type QuantType, type ServingWeightMap } from '@flywheel/kernels';
import { FUSED_PROJECTIONS } from './fused-projections';
import { ggufToHfTensorName, permuteQkRows, type GgufVocab } from './gguf.reader';
import { llama3RopeFactors } from './rope-freqs';

export interface GgufToWrite {
  spec: ModelSpec;
  /** Every tensor of expectedWeightShapes(spec); with tied embeddings an lm_head.weight is ignored. */
  weights: ServingWeightMap;
  name?: string;
  /** Written as `tokenizer.ggml.*`; none by default (llama.cpp needs one: see syntheticSpmVocab). */
  vocab?: GgufVocab | null;
  /** Storage of Float32Array matrices (norms and biases stay f32, as convert_hf_to_gguf.py keeps them). */
  floatType?: 'f32' | 'bf16';
}

/** ggml_type ids (ggml.h). */
const GGML_TYPE: Record<'f32' | 'bf16' | QuantType, number> = { f32: 0, q4_0: 2, q4_1: 3, q5_0: 6, q5_1: 7, q8_0: 8, q4_k: 12, q5_k: 13, q6_k: 14, bf16: 30 };
/** llama_ftype of a file whose matrices are mostly this type (llama.h); K-quants as their _M mixes when Q6_K is there. */
const FILE_TYPE: Record<'f32' | 'bf16' | QuantType, number> = { f32: 0, q4_0: 2, q4_1: 3, q5_0: 8, q5_1: 9, q8_0: 7, q4_k: 14, q5_k: 16, q6_k: 18, bf16: 32 };
const ALIGNMENT = 32;
const GGML_QUANT_VERSION = 2;

/** GGUF metadata value types (gguf.md). */
const T = { U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9 } as const;
type ScalarType = (typeof T)[Exclude<keyof typeof T, 'ARRAY'>];

type Meta = [key: string, type: ScalarType, value: number | boolean | string] | [key: string, type: typeof T.ARRAY, elemType: ScalarType, values: (number | string)[]];

type GgufArch = 'llama' | 'qwen3' | 'smollm3' | 'phi3' | 'gemma2' | 'gemma3';

/** The archs written with the Llama block layout (two norms per layer, SwiGLU); Gemma's are the others. */
const LLAMA_LIKE: readonly GgufArch[] = ['llama', 'qwen3', 'smollm3', 'phi3'];

/** Phi3MiniModel's GGUF name of each fused tensor (its `ffn_up` holds gate rows, then up rows: the fused SwiGLU input). */
const PHI3_FUSED_GGUF: Record<string, string> = { 'self_attn.qkv_proj.weight': 'attn_qkv.weight', 'mlp.gate_up_proj.weight': 'ffn_up.weight' };

/** Each layer's fused GGUF tensor and the HF parts it holds, in the row order fused-projections.ts splits them in. */
const PHI3_FUSED: (readonly [gguf: string, parts: readonly string[]])[] = FUSED_PROJECTIONS.map(([fused, parts]) => [
  PHI3_FUSED_GGUF[fused]!,
  parts,
]);

/** GGUF names of every tensor these archs have, inverted through the reader's map (one source of truth). */
const GGUF_TENSOR_NAMES = [
  'token_embd.weight',
  'output_norm.weight',
  'output.weight',
  ...['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down'].map((n) => `blk.#.${n}.weight`),
  ...['attn_q', 'attn_k', 'attn_v'].map((n) => `blk.#.${n}.bias`),
  ...['attn_q_norm', 'attn_k_norm', 'post_attention_norm', 'post_ffw_norm'].map((n) => `blk.#.${n}.weight`),
];

function hfToGgufName(hf: string, arch: GgufArch): string {
  const layer = /^model\.layers\.(\d+)\./.exec(hf)?.[1] ?? '';
  for (const pattern of GGUF_TENSOR_NAMES) {
    const gguf = pattern.replace('#', layer);
    if (ggufToHfTensorName(gguf, arch) === hf) return gguf;
  }
  throw new Error(`no GGUF name for tensor ${hf}`);
}

/**
 * Gemma 3 with q/k norms, Gemma 2 without, when the spec has Gemma's layers; Phi-3 for LongRoPE or partial rotary;
 * Qwen3 for q/k norms, SmolLM3 for NoPE layers; else llama (a Phi-3 with neither, Phi-3-mini-4k, runs the same as llama).
 */
function archOf(spec: ModelSpec): GgufArch {
  if (spec.sandwichNorms === true || spec.normWeightOffset === true || spec.hiddenAct === 'gelu_tanh') return spec.qkNorm ? 'gemma3' : 'gemma2';
  if (spec.longRope !== undefined || (spec.rotaryDim !== undefined && spec.rotaryDim !== spec.headDim)) return 'phi3';
  if (spec.qkNorm === true) return 'qwen3';
  if (spec.noRopeLayers !== undefined && spec.noRopeLayers.length > 0) return 'smollm3';
  return 'llama';
}

/**
 * What llama.cpp would run differently from the spec in a file of this arch. Arch llama carries none of the other
 * families' features. Phi-3: llama.cpp takes head_dim as hidden / heads (Phi3MiniModel writes no key_length) and
 * turns Phi's sliding window off. Gemma: llama.cpp always caps Gemma 2's scores and logits and never Gemma 3's, slides on its fixed
 * layers (Gemma 2 every 2nd layer full, Gemma 3 every 6th) with Gemma 3's local RoPE base 1e4, scales queries by
 * 1/sqrt(key_length) (1/sqrt(hidden / heads) for the 27B layer counts) and ties the head.
 */
function unwritableFeatures(spec: ModelSpec, arch: GgufArch): string[] {
  const s = spec;
  const out: string[] = [];
  const check = (bad: boolean, what: string) => {
    if (bad) out.push(what);
  };
  if (arch === 'phi3') {
    const rotaryDim = s.rotaryDim ?? s.headDim;
    check(s.headDim * s.numHeads !== s.hiddenSize, `headDim ${s.headDim} (llama.cpp's phi3: hidden / heads = ${s.hiddenSize / s.numHeads})`);
    check(s.longRope !== undefined && (s.longRope.shortFactor.length !== rotaryDim / 2 || s.longRope.longFactor.length !== rotaryDim / 2),
      `longRope factors of other than rotaryDim / 2 = ${rotaryDim / 2} values`);
    check(s.ropeLinearFactor !== undefined, 'ropeLinearFactor (Phi3MiniModel writes none)');
  } else {
    check(s.longRope !== undefined, 'longRope (phi3)');
    check(s.rotaryDim !== undefined && s.rotaryDim !== s.headDim, 'rotaryDim (phi3)');
  }
  if (arch === 'smollm3') {
    // llama.cpp's SmolLM3 skips RoPE on every 4th layer (n_no_rope_layer_step), whatever the file says.
    const every4th = Array.from({ length: s.numLayers }, (_, i) => i).filter((i) => (i + 1) % 4 === 0);
    check(JSON.stringify(s.noRopeLayers) !== JSON.stringify(every4th), `noRopeLayers ${JSON.stringify(s.noRopeLayers)} (llama.cpp: every 4th layer)`);
  } else {
    check(!!s.noRopeLayers?.length, 'noRopeLayers (smollm3)');
  }
  if (LLAMA_LIKE.includes(arch)) {
    check(s.qkNorm === true && arch !== 'qwen3', 'qkNorm (qwen3)');
    check(arch !== 'llama' && s.ropeScaling !== null, `ropeScaling (llama3 rope_freqs are read for llama only)`);
    check((arch === 'qwen3' || arch === 'phi3') && s.attentionBias, `attentionBias (${arch} has none)`);
    for (const key of ['embedScale', 'attnScale', 'attnSoftcap', 'finalSoftcap', 'ropeLocalTheta'] as const) check(s[key] !== undefined, key);
    check(s.slidingWindow !== undefined && s.slidingWindow < s.maxPositionEmbeddings, 'slidingWindow (llama.cpp attends to the whole context)');
    return out;
  }
  const period = arch === 'gemma2' ? 2 : 6;
  const is27B = s.numLayers === (arch === 'gemma2' ? 46 : 62);
  const scale = (is27B ? Math.trunc(s.hiddenSize / s.numHeads) : s.headDim) ** -0.5;
  check(s.hiddenAct !== 'gelu_tanh' || s.sandwichNorms !== true || s.normWeightOffset !== true, 'a mix of Gemma and Llama layers');
  check(s.embedScale !== Math.fround(Math.sqrt(s.hiddenSize)), `embedScale ${s.embedScale ?? 1}`);
  check((s.attnScale ?? s.headDim ** -0.5) !== scale, `attnScale ${s.attnScale} (llama.cpp: ${scale})`);
  check(arch === 'gemma2' ? s.attnSoftcap === undefined || s.finalSoftcap === undefined : s.attnSoftcap !== undefined || s.finalSoftcap !== undefined,
    arch === 'gemma2' ? 'no soft caps' : 'soft caps');
  check(s.slidingWindow === undefined, 'full attention on every layer');
  const sliding = Array.from({ length: s.numLayers }, (_, i) => s.slidingLayers?.includes(i) ?? true);
  check(sliding.some((x, i) => x !== (i % period < period - 1)), `slidingLayers ${JSON.stringify(s.slidingLayers)} (llama.cpp: every ${period === 2 ? '2nd' : '6th'} layer full)`);
  check(arch === 'gemma3' ? s.ropeLocalTheta !== 10000 : s.ropeLocalTheta !== undefined, `ropeLocalTheta ${s.ropeLocalTheta}`);
  check(!s.tieWordEmbeddings, 'an untied head');
  check(s.attentionBias, 'attentionBias');
  check(s.ropeScaling !== null, 'ropeScaling');
  check(arch === 'gemma2' && s.ropeLinearFactor !== undefined, 'ropeLinearFactor (gemma2)');
  return out;
}

/**
 * A SentencePiece-style ("llama") vocab of `size` pieces that llama.cpp accepts: <unk>, <s>, </s>, the 256 byte
 * pieces <0x00>..<0xFF> (byte fallback; llama.cpp looks up <0x0A> for newline), then made-up pieces "▁p259", ...
 */
export function syntheticSpmVocab(size: number): GgufVocab {
  if (!Number.isInteger(size) || size < 259) throw new Error(`a synthetic SentencePiece vocab needs at least 259 pieces, got ${size}`);
  const hex = (b: number) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
  const tokens = ['<unk>', '<s>', '</s>', ...Array.from({ length: 256 }, (_, b) => hex(b))];
  for (let i = tokens.length; i < size; i++) tokens.push(`▁p${i}`);
  // token_type: 1 normal, 2 unknown, 3 control, 6 byte (llama_token_attr in gguf-py's TokenType).
  const tokenTypes = tokens.map((_, i) => (i === 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1));
  const scores = tokens.map((_, i) => (i < 259 ? 0 : -(i - 259)));
  return {
    model: 'llama',
    pre: 'default',
    tokens,
    scores,
    tokenTypes,
    merges: null,
    bosTokenId: 1,
    eosTokenId: 2,
    unkTokenId: 0,
    padTokenId: null,
    addBosToken: true,
    chatTemplate: null,
  };
}

interface TensorOut {
  name: string;
  /** ne[0..n): HF shape reversed. */
  dims: number[];
  type: number;
  bytes: Uint8Array;
}

/** Writes `model` to `file` (via a temporary file and rename, so a reader never sees half a file). */
export async function writeGguf(file: string, model: GgufToWrite): Promise<void> {
  // A file written without these would load as a different model.
  const arch = archOf(model.spec);
  const extras = unwritableFeatures(model.spec, arch);
  if (extras.length > 0) {
    throw new Error(`writeGguf writes the llama, qwen3, smollm3, phi3, gemma2 and gemma3 architectures as llama.cpp runs them; as ${arch} this model also needs ${extras.join(', ')}`);
  }
  const tensors = tensorsOf(model, arch);
  const header = serializeHeader(metadataOf(model, tensors, arch), tensors);
  const tmp = `${file}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w');
  try {
    await fh.write(header);
    const zeros = new Uint8Array(ALIGNMENT);
    for (const t of tensors) {
      await fh.write(t.bytes);
      await fh.write(zeros, 0, padding(t.bytes.length));
    }
    await fh.close();
    await rename(tmp, file);
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
}

function tensorsOf({ spec, weights, floatType = 'f32' }: GgufToWrite, arch: GgufArch): TensorOut[] {
  const out: TensorOut[] = [];
  const f32Vector = (name: string, values: readonly number[]) => {
    const data = Float32Array.from(values);
    out.push({ name, dims: [data.length], type: GGML_TYPE.f32, bytes: bytesOf(data) });
  };
  if (spec.ropeScaling !== null) f32Vector('rope_freqs.weight', llama3RopeFactors(spec.headDim, spec.ropeTheta, spec.ropeScaling));
  // Phi3MiniModel.generate_extra_tensors: long, then short.
  if (spec.longRope !== undefined) {
    f32Vector('rope_factors_long.weight', spec.longRope.longFactor);
    f32Vector('rope_factors_short.weight', spec.longRope.shortFactor);
  }
  const byHf = new Map<string, TensorOut>();
  for (const [hf, shape] of expectedWeightShapes(spec)) {
    const t = weights.get(hf);
    if (t === undefined) throw new Error(`missing tensor ${hf}`);
    const [rows, cols = 1] = shape;
    // convert_hf_to_gguf.py permutes q/k rows for interleaved RoPE (LlamaModel and its SmolLM3 subclass) only.
    const qk = arch === 'llama' || arch === 'smollm3' ? /self_attn\.([qk])_proj\./.exec(hf)?.[1] : undefined;
    const heads = qk === 'q' ? spec.numHeads : spec.numKvHeads;
    const name = hfToGgufName(hf, arch);
    const dims = [...shape].reverse();
    if (t instanceof Float32Array) {
      if (t.length !== rows * cols) throw new Error(`${hf} has ${t.length} values, expected ${rows}x${cols}`);
      const data = qk === undefined ? t : permuteQkRows(t, heads, spec.headDim, cols);
      const bf16 = floatType === 'bf16' && shape.length === 2;
      byHf.set(hf, { name, dims, type: GGML_TYPE[bf16 ? 'bf16' : 'f32'], bytes: bf16 ? bytesOf(f32ToBf16(data)) : bytesOf(data) });
    } else {
      if (!isQuantType(t.dtype) || shape.length !== 2) throw new Error(`${hf}: a quantized tensor must be a matrix of a known type`);
      const { elems, bytes } = QUANT_BLOCKS[t.dtype];
      if (cols % elems !== 0 || t.blocks.length !== (rows * cols * bytes) / elems) {
        throw new Error(`${hf}: ${t.blocks.length} bytes of ${t.dtype} do not fit [${rows}, ${cols}]`);
      }
      const data = qk === undefined ? t.blocks : permuteQkBlockRows(t, heads, spec.headDim, cols);
      byHf.set(hf, { name, dims, type: GGML_TYPE[t.dtype], bytes: data });
    }
  }
  return [...out, ...(arch === 'phi3' ? fusedPhi3(byHf) : byHf.values())];
}

/**
 * The tensors with each layer's q/k/v and gate/up replaced by Phi-3's fused ones (PHI3_FUSED), written where the first
 * part was. Rows are whole blocks in every storage type, so a fused tensor is its parts' bytes one after another; the
 * parts must share that type (llama-quantize gives attn_qkv and ffn_up one type each).
 */
function fusedPhi3(byHf: ReadonlyMap<string, TensorOut>): TensorOut[] {
  const out: TensorOut[] = [];
  for (const [hf, t] of byHf) {
    const [, layer = '', local = ''] = /^model\.layers\.(\d+)\.(.+)$/.exec(hf) ?? [];
    const group = PHI3_FUSED.find(([, parts]) => parts.includes(local));
    if (group === undefined) {
      out.push(t);
      continue;
    }
    const [gguf, parts] = group;
    if (local !== parts[0]) continue;
    const ts = parts.map((p) => byHf.get(`model.layers.${layer}.${p}`)!);
    if (ts.some((p) => p.type !== t.type)) {
      throw new Error(`phi3 stores layer ${layer}'s ${parts.join(', ')} as one tensor, ${gguf}: they must share one type, got ggml types ${ts.map((p) => p.type).join(', ')}`);
    }
    out.push({ name: `blk.${layer}.${gguf}`, dims: [t.dims[0], ts.reduce((n, p) => n + p.dims[1], 0)], type: t.type, bytes: Buffer.concat(ts.map((p) => p.bytes)) });
  }
  return out;
}

/** permuteQkRows over GGML blocks: a row of `cols` weights is whole blocks, so rows move as bytes. */
function permuteQkBlockRows(t: QuantTensor, nHeads: number, headDim: number, cols: number): Uint8Array {
  const rowBytes = (cols / QUANT_BLOCKS[t.dtype].elems) * QUANT_BLOCKS[t.dtype].bytes;
  const out = new Uint8Array(t.blocks.length);
  const half = headDim / 2;
  for (let r = 0; r < nHeads * headDim; r++) {
    const hfRow = Math.floor(r / headDim) * headDim + (r % 2) * half + ((r % headDim) >> 1);
    out.set(t.blocks.subarray(hfRow * rowBytes, (hfRow + 1) * rowBytes), r * rowBytes);
  }
  return out;
}

/** Round to nearest even, as gguf-py's bf16 conversion (NaN kept quiet). */
function f32ToBf16(x: Float32Array): Uint16Array {
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const b = bits[i];
    out[i] = (b & 0x7fffffff) > 0x7f800000 ? (b >>> 16) | 0x40 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

function bytesOf(a: Float32Array | Uint16Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** The keys convert_hf_to_gguf.py writes for a Llama (LlamaModel), Phi-3 (Phi3MiniModel) or Gemma (Gemma2Model, Gemma3Model) model, in its order. */
function metadataOf({ spec, name, vocab }: GgufToWrite, tensors: TensorOut[], arch: GgufArch): Meta[] {
  const meta: Meta[] = [
    ['general.architecture', T.STRING, arch],
    ['general.type', T.STRING, 'model'],
  ];
  if (name !== undefined) meta.push(['general.name', T.STRING, name]);
  if (!LLAMA_LIKE.includes(arch)) {
    meta.push(
      [`${arch}.context_length`, T.U32, spec.maxPositionEmbeddings],
      [`${arch}.embedding_length`, T.U32, spec.hiddenSize],
      [`${arch}.block_count`, T.U32, spec.numLayers],
      [`${arch}.feed_forward_length`, T.U32, spec.intermediateSize],
      [`${arch}.attention.head_count`, T.U32, spec.numHeads],
      [`${arch}.attention.head_count_kv`, T.U32, spec.numKvHeads],
      [`${arch}.attention.layer_norm_rms_epsilon`, T.F32, spec.rmsNormEps],
      [`${arch}.attention.key_length`, T.U32, spec.headDim],
      [`${arch}.attention.value_length`, T.U32, spec.headDim],
      ['general.file_type', T.U32, fileTypeOf(tensors)],
    );
    // Gemma2Model writes no RoPE base (llama.cpp's default is 1e4).
    if (arch === 'gemma3' || spec.ropeTheta !== 10000) meta.push([`${arch}.rope.freq_base`, T.F32, spec.ropeTheta]);
    if (spec.ropeLinearFactor !== undefined) meta.push(...linearScalingMeta(arch, spec.ropeLinearFactor));
    if (arch === 'gemma2') {
      meta.push([`${arch}.attn_logit_softcapping`, T.F32, spec.attnSoftcap!], [`${arch}.final_logit_softcapping`, T.F32, spec.finalSoftcap!]);
    }
    meta.push([`${arch}.attention.sliding_window`, T.U32, spec.slidingWindow!], ['general.quantization_version', T.U32, GGML_QUANT_VERSION]);
    if (vocab) meta.push(...vocabMetadata(vocab));
    return meta;
  }
  if (arch === 'phi3') {
    // Phi3MiniModel.set_gguf_parameters (no vocab_size, no key_length), then generate_extra_tensors' attn_factor.
    meta.push(
      [`${arch}.context_length`, T.U32, spec.maxPositionEmbeddings],
      [`${arch}.rope.scaling.original_context_length`, T.U32, spec.longRope?.originalMaxPositionEmbeddings ?? spec.maxPositionEmbeddings],
      [`${arch}.embedding_length`, T.U32, spec.hiddenSize],
      [`${arch}.feed_forward_length`, T.U32, spec.intermediateSize],
      [`${arch}.block_count`, T.U32, spec.numLayers],
      [`${arch}.attention.head_count`, T.U32, spec.numHeads],
      [`${arch}.attention.head_count_kv`, T.U32, spec.numKvHeads],
      [`${arch}.attention.layer_norm_rms_epsilon`, T.F32, spec.rmsNormEps],
      [`${arch}.rope.dimension_count`, T.U32, spec.rotaryDim ?? spec.headDim],
      [`${arch}.rope.freq_base`, T.F32, spec.ropeTheta],
      ['general.file_type', T.U32, fileTypeOf(tensors)],
      // 0 when config.json has none; llama.cpp ignores Phi's window either way.
      [`${arch}.attention.sliding_window`, T.U32, spec.slidingWindow ?? 0],
    );
    if (spec.longRope !== undefined) meta.push([`${arch}.rope.scaling.attn_factor`, T.F32, spec.longRope.attentionFactor]);
    meta.push(['general.quantization_version', T.U32, GGML_QUANT_VERSION]);
    if (vocab) meta.push(...vocabMetadata(vocab));
    return meta;
  }
  meta.push(
    [`${arch}.block_count`, T.U32, spec.numLayers],
    [`${arch}.context_length`, T.U32, spec.maxPositionEmbeddings],
    [`${arch}.embedding_length`, T.U32, spec.hiddenSize],
    [`${arch}.feed_forward_length`, T.U32, spec.intermediateSize],
    [`${arch}.attention.head_count`, T.U32, spec.numHeads],
    [`${arch}.attention.head_count_kv`, T.U32, spec.numKvHeads],
    [`${arch}.rope.freq_base`, T.F32, spec.ropeTheta],
    [`${arch}.attention.layer_norm_rms_epsilon`, T.F32, spec.rmsNormEps],
  );
  if (spec.headDim * spec.numHeads !== spec.hiddenSize) {
    meta.push([`${arch}.attention.key_length`, T.U32, spec.headDim], [`${arch}.attention.value_length`, T.U32, spec.headDim]);
  }
  meta.push(['general.file_type', T.U32, fileTypeOf(tensors)]);
  // LlamaModel (and SmolLM3Model, its subclass) adds these; Qwen3Model, a TextModel, does not.
  if (arch !== 'qwen3') meta.push([`${arch}.vocab_size`, T.U32, spec.vocabSize], [`${arch}.rope.dimension_count`, T.U32, spec.headDim]);
  meta.push(['general.quantization_version', T.U32, GGML_QUANT_VERSION]);
  if (spec.ropeLinearFactor !== undefined) meta.push(...linearScalingMeta(arch, spec.ropeLinearFactor));
  if (vocab) meta.push(...vocabMetadata(vocab));
  return meta;
}

/** convert_hf_to_gguf.py's rope_scaling "linear": type and factor (llama.cpp's freq_scale = 1 / factor). */
function linearScalingMeta(arch: string, factor: number): Meta[] {
  return [
    [`${arch}.rope.scaling.type`, T.STRING, 'linear'],
    [`${arch}.rope.scaling.factor`, T.F32, factor],
  ];
}

function vocabMetadata(v: GgufVocab): Meta[] {
  const meta: Meta[] = [['tokenizer.ggml.model', T.STRING, v.model]];
  if (v.pre !== null) meta.push(['tokenizer.ggml.pre', T.STRING, v.pre]);
  meta.push(['tokenizer.ggml.tokens', T.ARRAY, T.STRING, v.tokens]);
  if (v.scores !== null) meta.push(['tokenizer.ggml.scores', T.ARRAY, T.F32, v.scores]);
  if (v.tokenTypes !== null) meta.push(['tokenizer.ggml.token_type', T.ARRAY, T.I32, v.tokenTypes]);
  if (v.merges !== null) meta.push(['tokenizer.ggml.merges', T.ARRAY, T.STRING, v.merges]);
  const ids: [string, number | null][] = [
    ['bos_token_id', v.bosTokenId],
    ['eos_token_id', v.eosTokenId],
    ['unknown_token_id', v.unkTokenId],
    ['padding_token_id', v.padTokenId],
  ];
  for (const [key, id] of ids) if (id !== null) meta.push([`tokenizer.ggml.${key}`, T.U32, id]);
  if (v.addBosToken !== null) meta.push(['tokenizer.ggml.add_bos_token', T.BOOL, v.addBosToken]);
  if (v.addSpacePrefix !== undefined) meta.push(['tokenizer.ggml.add_space_prefix', T.BOOL, v.addSpacePrefix]);
  if (v.chatTemplate !== null) meta.push(['tokenizer.chat_template', T.STRING, v.chatTemplate]);
  return meta;
}

/** The type most matrix elements are stored in; a K-quant mix with Q6_K tensors is the _M variant (S + 1). */
function fileTypeOf(tensors: TensorOut[]): number {
  const elems = new Map<number, number>();
  for (const t of tensors) {
    if (t.dims.length === 2) elems.set(t.type, (elems.get(t.type) ?? 0) + t.dims[0] * t.dims[1]);
  }
  const top = [...elems].sort((a, b) => b[1] - a[1])[0]?.[0] ?? GGML_TYPE.f32;
  const dtype = (Object.keys(GGML_TYPE) as (keyof typeof GGML_TYPE)[]).find((k) => GGML_TYPE[k] === top) ?? 'f32';
  const mixedWithQ6 = (dtype === 'q4_k' || dtype === 'q5_k') && elems.has(GGML_TYPE.q6_k);
  return FILE_TYPE[dtype] + (mixedWithQ6 ? 1 : 0);
}

const padding = (n: number): number => (ALIGNMENT - (n % ALIGNMENT)) % ALIGNMENT;

/** Magic, version, counts, metadata, tensor infos, padded to the alignment: everything before the tensor data. */
function serializeHeader(meta: Meta[], tensors: TensorOut[]): Buffer {
  const w = new ByteWriter();
  w.u32(0x46554747); // "GGUF"
  w.u32(3);
  w.u64(tensors.length);
  w.u64(meta.length);
  for (const m of meta) {
    w.string(m[0]);
    w.u32(m[1]);
    if (m[1] === T.ARRAY) {
      w.u32(m[2]);
      w.u64(m[3].length);
      for (const v of m[3]) w.value(m[2], v);
    } else w.value(m[1], m[2]);
  }
  let offset = 0;
  for (const t of tensors) {
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.type);
    w.u64(offset);
    offset += t.bytes.length + padding(t.bytes.length);
  }
  w.zeros(padding(w.length));
  return w.toBuffer();
}

/** Little-endian appends into growing chunks. */
class ByteWriter {
  private chunks: Buffer[] = [];
  private cur = Buffer.alloc(1 << 16);
  private pos = 0;
  private done = 0;

  get length(): number {
    return this.done + this.pos;
  }

  private room(n: number): void {
    if (this.pos + n <= this.cur.length) return;
    this.chunks.push(this.cur.subarray(0, this.pos));
    this.done += this.pos;
    this.cur = Buffer.alloc(Math.max(1 << 16, n));
    this.pos = 0;
  }

  u32(v: number): void {
    this.room(4);
    this.pos = this.cur.writeUInt32LE(v, this.pos);
  }

  u64(v: number): void {
    this.room(8);
    this.pos = this.cur.writeBigUInt64LE(BigInt(v), this.pos);
  }

  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.room(bytes.length);
    this.pos += bytes.copy(this.cur, this.pos);
  }

  zeros(n: number): void {
    this.room(n);
    this.cur.fill(0, this.pos, this.pos + n);
    this.pos += n;
  }

  value(type: ScalarType, v: number | boolean | string): void {
    if (type === T.STRING) return this.string(String(v));
    this.room(4);
    if (type === T.U32) this.pos = this.cur.writeUInt32LE(Number(v), this.pos);
    else if (type === T.I32) this.pos = this.cur.writeInt32LE(Number(v), this.pos);
    else if (type === T.F32) this.pos = this.cur.writeFloatLE(Number(v), this.pos);
    else if (type === T.BOOL) this.pos = this.cur.writeUInt8(v ? 1 : 0, this.pos);
    else throw new Error(`unsupported GGUF value type ${type}`);
  }

  toBuffer(): Buffer {
    return Buffer.concat([...this.chunks, this.cur.subarray(0, this.pos)]);
  }
}
