/**
 * Writes a Llama model (ModelSpec + ServingWeightMap, HF names and layout) as a GGUF v3 file laid out as llama.cpp's
 * convert_hf_to_gguf.py writes one: arch "llama", its metadata keys and value types, q/k rows permuted for
 * interleaved RoPE, tensor data 32-byte aligned, f32 / bf16 / Q8_0 / Q4_0 / Q4_K / Q5_K / Q6_K tensors as given (no
 * quantizing here), optionally a tokenizer (a file's own, or a synthetic SentencePiece vocab so llama.cpp loads a
 * benchmark model of any vocab size). Not a reader (gguf.reader), not a quantizer (ops.quantize).
 */
import { open, rename, rm } from 'node:fs/promises';
import { expectedWeightShapes, isQuantType, QUANT_BLOCKS, type ModelSpec, type QuantTensor, type QuantType, type ServingWeightMap } from '@flywheel/kernels';
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

/** GGUF names of every tensor llama.cpp's llama arch has, inverted through the reader's map (one source of truth). */
const GGUF_TENSOR_NAMES = [
  'token_embd.weight',
  'output_norm.weight',
  'output.weight',
  ...['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down'].map((n) => `blk.#.${n}.weight`),
  ...['attn_q', 'attn_k', 'attn_v'].map((n) => `blk.#.${n}.bias`),
];

function hfToGgufName(hf: string): string {
  const layer = /^model\.layers\.(\d+)\./.exec(hf)?.[1] ?? '';
  for (const pattern of GGUF_TENSOR_NAMES) {
    const gguf = pattern.replace('#', layer);
    if (ggufToHfTensorName(gguf) === hf) return gguf;
  }
  throw new Error(`no GGUF name for tensor ${hf}`);
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
  // Arch `llama` carries none of these: a file written without them would load as a different model.
  const s = model.spec;
  const extras = [s.qkNorm ? 'qkNorm (qwen3)' : null, s.noRopeLayers?.length ? 'noRopeLayers (smollm3)' : null, s.rotaryDim !== undefined && s.rotaryDim !== s.headDim ? 'rotaryDim (phi3)' : null, s.longRope ? 'longRope (phi3)' : null].filter((x) => x !== null);
  if (extras.length > 0) throw new Error(`writeGguf writes the llama architecture only; this model also needs ${extras.join(', ')}`);
  const tensors = tensorsOf(model);
  const header = serializeHeader(metadataOf(model, tensors), tensors);
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

function tensorsOf({ spec, weights, floatType = 'f32' }: GgufToWrite): TensorOut[] {
  const out: TensorOut[] = [];
  if (spec.ropeScaling !== null) {
    const factors = Float32Array.from(llama3RopeFactors(spec.headDim, spec.ropeTheta, spec.ropeScaling));
    out.push({ name: 'rope_freqs.weight', dims: [factors.length], type: GGML_TYPE.f32, bytes: bytesOf(factors) });
  }
  for (const [hf, shape] of expectedWeightShapes(spec)) {
    const t = weights.get(hf);
    if (t === undefined) throw new Error(`missing tensor ${hf}`);
    const [rows, cols = 1] = shape;
    const qk = /self_attn\.([qk])_proj\./.exec(hf)?.[1];
    const heads = qk === 'q' ? spec.numHeads : spec.numKvHeads;
    const name = hfToGgufName(hf);
    const dims = [...shape].reverse();
    if (t instanceof Float32Array) {
      if (t.length !== rows * cols) throw new Error(`${hf} has ${t.length} values, expected ${rows}x${cols}`);
      const data = qk === undefined ? t : permuteQkRows(t, heads, spec.headDim, cols);
      const bf16 = floatType === 'bf16' && shape.length === 2;
      out.push({ name, dims, type: GGML_TYPE[bf16 ? 'bf16' : 'f32'], bytes: bf16 ? bytesOf(f32ToBf16(data)) : bytesOf(data) });
    } else {
      if (!isQuantType(t.dtype) || shape.length !== 2) throw new Error(`${hf}: a quantized tensor must be a matrix of a known type`);
      const { elems, bytes } = QUANT_BLOCKS[t.dtype];
      if (cols % elems !== 0 || t.blocks.length !== (rows * cols * bytes) / elems) {
        throw new Error(`${hf}: ${t.blocks.length} bytes of ${t.dtype} do not fit [${rows}, ${cols}]`);
      }
      const data = qk === undefined ? t.blocks : permuteQkBlockRows(t, heads, spec.headDim, cols);
      out.push({ name, dims, type: GGML_TYPE[t.dtype], bytes: data });
    }
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

/** The keys convert_hf_to_gguf.py writes for a Llama model, in its order. */
function metadataOf({ spec, name, vocab }: GgufToWrite, tensors: TensorOut[]): Meta[] {
  const meta: Meta[] = [
    ['general.architecture', T.STRING, 'llama'],
    ['general.type', T.STRING, 'model'],
  ];
  if (name !== undefined) meta.push(['general.name', T.STRING, name]);
  meta.push(
    ['llama.block_count', T.U32, spec.numLayers],
    ['llama.context_length', T.U32, spec.maxPositionEmbeddings],
    ['llama.embedding_length', T.U32, spec.hiddenSize],
    ['llama.feed_forward_length', T.U32, spec.intermediateSize],
    ['llama.attention.head_count', T.U32, spec.numHeads],
    ['llama.attention.head_count_kv', T.U32, spec.numKvHeads],
    ['llama.rope.freq_base', T.F32, spec.ropeTheta],
    ['llama.attention.layer_norm_rms_epsilon', T.F32, spec.rmsNormEps],
  );
  if (spec.headDim * spec.numHeads !== spec.hiddenSize) {
    meta.push(['llama.attention.key_length', T.U32, spec.headDim], ['llama.attention.value_length', T.U32, spec.headDim]);
  }
  meta.push(
    ['general.file_type', T.U32, fileTypeOf(tensors)],
    ['llama.vocab_size', T.U32, spec.vocabSize],
    ['llama.rope.dimension_count', T.U32, spec.headDim],
    ['general.quantization_version', T.U32, GGML_QUANT_VERSION],
  );
  if (vocab) meta.push(...vocabMetadata(vocab));
  return meta;
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
