/**
 * Writes safetensors files (F32, or BF16/F16 rounded to nearest even) and whole Hugging Face checkpoint
 * directories (config.json + model.safetensors + the source's tokenizer files) that our loader, transformers and
 * the safetensors library all read, in each family's own layout (Phi-3's fused projections, Gemma's w norm weights). It does not read checkpoints (safetensors.reader does), nor write training
 * state (@flywheel/train).
 */
import { chmod, copyFile, mkdir, rename, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { expectedWeightShapes, type ModelSpec, type WeightMap } from '@flywheel/kernels';
import { isFile } from './checkpoint-file.io';
import { fuseProjections } from './fused-projections';
import { removeNormWeightOffset } from './gemma-norms';
import { ModelLoadError } from './model-load.error';
import { SAFETENSORS_SINGLE_FILE } from './safetensors.reader';

export type WritableSafetensorsDtype = 'F32' | 'BF16' | 'F16';

export interface TensorToWrite {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** Files copied from the source checkpoint when present (tokenizer and generation defaults). */
export const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'tokenizer.model',
  'generation_config.json',
  'chat_template.jinja',
] as const;

function f32ToBf16Bits(x: Float32Array): Uint16Array {
  const u = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const b = u[i];
    out[i] = (b & 0x7fffffff) > 0x7f800000 ? (b >>> 16) | 0x40 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

function f32ToF16Bits(x: Float32Array): Uint16Array {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    f[0] = x[i];
    const b = u[0];
    const sign = (b >>> 16) & 0x8000;
    const exp = (b >>> 23) & 0xff;
    let mant = b & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    let e = exp - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant |= 0x800000;
      const shift = 14 - e;
      let h = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && (h & 1))) h++;
      out[i] = sign | h;
      continue;
    }
    let h = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
    e = h >>> 10;
    out[i] = sign | (e >= 0x1f ? 0x7c00 : h);
  }
  return out;
}

/**
 * One safetensors file as bytes: tensors sorted by name (as the safetensors library writes them), header JSON
 * padded with spaces to a multiple of 8, data little-endian and contiguous.
 */
export function serializeSafetensors(
  tensors: readonly TensorToWrite[],
  opts: { dtype?: WritableSafetensorsDtype; metadata?: Record<string, string> } = {},
): Buffer {
  const dtype = opts.dtype ?? 'F32';
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', ...(opts.metadata ?? {}) } };
  const blobs: Buffer[] = [];
  let offset = 0;
  const seen = new Set<string>();
  for (const t of sorted) {
    if (seen.has(t.name)) throw new Error(`safetensors writer: tensor ${t.name} given twice`);
    seen.add(t.name);
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new Error(`safetensors writer: ${t.name} has ${t.data.length} values for shape [${t.shape.join(', ')}]`);
    let blob: Buffer;
    if (dtype === 'F32') {
      blob = Buffer.alloc(n * 4);
      for (let i = 0; i < n; i++) blob.writeFloatLE(t.data[i], i * 4);
    } else {
      const bits = dtype === 'BF16' ? f32ToBf16Bits(t.data) : f32ToF16Bits(t.data);
      blob = Buffer.alloc(n * 2);
      for (let i = 0; i < n; i++) blob.writeUInt16LE(bits[i], i * 2);
    }
    header[t.name] = { dtype, shape: t.shape, data_offsets: [offset, offset + blob.length] };
    blobs.push(blob);
    offset += blob.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([head, Buffer.from(json, 'utf8'), ...blobs]);
}

/** Writes to `file` atomically (a temporary file in the same folder, then rename). */
export async function writeFileAtomic(file: string, data: Buffer | string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}

export async function writeSafetensorsFile(
  file: string,
  tensors: readonly TensorToWrite[],
  opts: { dtype?: WritableSafetensorsDtype; metadata?: Record<string, string> } = {},
): Promise<void> {
  await writeFileAtomic(file, serializeSafetensors(tensors, opts));
}

export interface HfCheckpointToWrite {
  spec: ModelSpec;
  weights: WeightMap;
  /** Rows of score.weight for a sequence-classification (reward model) export; null (default) for a causal LM. */
  scoreLabels?: number | null;
  /** The source config.json, kept for fields we do not model (token ids, model_type, ...); spec fields override. */
  baseConfig?: Record<string, unknown> | null;
  /** Folder whose tokenizer / generation files are copied. */
  tokenizerDir?: string | null;
  dtype?: WritableSafetensorsDtype;
}

/**
 * The config.json written for `spec`: the base's fields, then the spec's in the names transformers' config class of
 * the checkpoint's family reads (LlamaConfig, Qwen2Config, ..., Gemma2Config, Gemma3TextConfig), so that the
 * directory reloads to the same spec. Throws a ModelLoadError for a spec no family can describe.
 */
export function hfConfigFor(spec: ModelSpec, scoreLabels: number | null, base: Record<string, unknown> | null, dtype: WritableSafetensorsDtype): Record<string, unknown> {
  // rope_parameters (transformers 5) would shadow the rope_theta / rope_scaling written from the spec, and a Gemma 3
  // wrapper's text_config the fields written at the top.
  const shadowing = ['rope_parameters', 'text_config', 'vision_config'];
  const kept = Object.fromEntries(Object.entries(base ?? {}).filter(([k]) => !shadowing.includes(k)));
  const baseArch = Array.isArray(kept.architectures) && typeof kept.architectures[0] === 'string' ? kept.architectures[0] : null;
  const family = checkpointFamily(spec, baseArch);
  const sameFamily = familyOf(baseArch) === family;
  const gemma = family === 'Gemma2' || family === 'Gemma3';
  const unwritable = unwritableFeatures(spec, family);
  if (unwritable.length > 0) throw new ModelLoadError(`cannot write the checkpoint as ${family}: its config has no way to say ${unwritable.join(', ')}`);
  const causal = sameFamily && baseArch !== null && !baseArch.endsWith('ForSequenceClassification') ? baseArch : `${family}ForCausalLM`;
  // transformers' Gemma3ForSequenceClassification is the multimodal one; a Gemma3TextConfig classifier is Gemma3Text's.
  const scoring = family === 'Mistral' ? 'LlamaForSequenceClassification' : family === 'Gemma3' ? 'Gemma3TextForSequenceClassification' : `${family}ForSequenceClassification`;
  const config: Record<string, unknown> = {
    ...kept,
    architectures: [scoreLabels !== null ? scoring : causal],
    model_type: sameFamily && !gemma && typeof kept.model_type === 'string' ? kept.model_type : MODEL_TYPES[family],
    vocab_size: spec.vocabSize,
    hidden_size: spec.hiddenSize,
    intermediate_size: spec.intermediateSize,
    num_hidden_layers: spec.numLayers,
    num_attention_heads: spec.numHeads,
    num_key_value_heads: spec.numKvHeads,
    head_dim: spec.headDim,
    hidden_act: gemma ? 'gelu_pytorch_tanh' : 'silu',
    rms_norm_eps: spec.rmsNormEps,
    rope_theta: spec.ropeTheta,
    rope_scaling: spec.ropeScaling
      ? {
          rope_type: 'llama3',
          factor: spec.ropeScaling.factor,
          low_freq_factor: spec.ropeScaling.lowFreqFactor,
          high_freq_factor: spec.ropeScaling.highFreqFactor,
          original_max_position_embeddings: spec.ropeScaling.originalMaxPositionEmbeddings,
        }
      : spec.longRope
        ? longRopeConfig(spec)
        : spec.ropeLinearFactor !== undefined
          ? { rope_type: 'linear', factor: spec.ropeLinearFactor }
          : null,
    attention_bias: spec.attentionBias,
    mlp_bias: false,
    max_position_embeddings: spec.maxPositionEmbeddings,
    tie_word_embeddings: spec.tieWordEmbeddings,
    torch_dtype: dtype === 'F32' ? 'float32' : dtype === 'BF16' ? 'bfloat16' : 'float16',
  };
  if (scoreLabels !== null) config.num_labels = scoreLabels;
  else delete config.num_labels;
  if (spec.longRope) config.original_max_position_embeddings = spec.longRope.originalMaxPositionEmbeddings;
  if (spec.rotaryDim !== undefined && spec.rotaryDim !== spec.headDim) config.partial_rotary_factor = spec.rotaryDim / spec.headDim;
  else if (family === 'Phi3') config.partial_rotary_factor = 1.0;
  if (family === 'SmolLM3') {
    // SmolLM3Config's per-layer flags: 1 uses RoPE, 0 is a NoPE layer.
    config.no_rope_layers = Array.from({ length: spec.numLayers }, (_, i) => (spec.noRopeLayers?.includes(i) ? 0 : 1));
  }
  const sliding = slidingFlags(spec);
  const layerTypes = sliding.map((s) => (s ? 'sliding_attention' : 'full_attention'));
  if (gemma) {
    // Gemma2Config / Gemma3TextConfig names; layer_types (transformers >= 4.53) says which layers slide.
    config.hidden_activation = 'gelu_pytorch_tanh';
    config.query_pre_attn_scalar = queryPreAttnScalar(spec.attnScale ?? spec.headDim ** -0.5, kept.query_pre_attn_scalar);
    config.attn_logit_softcapping = spec.attnSoftcap ?? null;
    config.final_logit_softcapping = spec.finalSoftcap ?? null;
    config.sliding_window = spec.slidingWindow ?? null;
    config.layer_types = layerTypes;
    delete config.mlp_bias;
    if (family === 'Gemma3') {
      config.rope_local_base_freq = spec.ropeLocalTheta ?? spec.ropeTheta;
      // Older transformers read the pattern instead of layer_types: keep it only where it gives the same layers.
      const period = sliding.findIndex((s) => !s) + 1;
      if (period > 0 && sliding.every((s, i) => s === ((i + 1) % period !== 0))) config.sliding_window_pattern = period;
      else delete config.sliding_window_pattern;
    }
  } else if (family === 'Mistral') {
    config.sliding_window = spec.slidingWindow ?? null;
    delete config.layer_types;
  } else if (family === 'Qwen2' || family === 'Qwen3') {
    // Qwen2Config / Qwen3Config: the window on the layers from max_window_layers on (older transformers), or layer_types.
    config.use_sliding_window = spec.slidingWindow !== undefined;
    if (spec.slidingWindow !== undefined) {
      config.sliding_window = spec.slidingWindow;
      const from = sliding.indexOf(true);
      if (sliding.every((s, i) => s === i >= from)) config.max_window_layers = from;
      config.layer_types = layerTypes;
    } else if (Array.isArray(config.layer_types)) {
      config.layer_types = layerTypes;
    }
  }
  return config;
}

const MODEL_TYPES: Record<string, string> = {
  Llama: 'llama', Qwen2: 'qwen2', Qwen3: 'qwen3', Mistral: 'mistral', SmolLM3: 'smollm3', Phi3: 'phi3', Gemma2: 'gemma2', Gemma3: 'gemma3_text',
};

function familyOf(arch: string | null): string | undefined {
  return /^(Llama|Qwen2|Qwen3|Mistral|SmolLM3|Phi3|Gemma2|Gemma3)/.exec(arch ?? '')?.[1];
}

/**
 * The family a written checkpoint keeps: Gemma 2 or 3 when the spec has Gemma's layers (whatever the base says), else
 * the base's (Qwen2's q/k/v bias and Phi-3's fused projections are implied by the name), else the one the spec needs
 * (q/k norms: Qwen3; NoPE layers: SmolLM3; LongRoPE or partial RoPE: Phi3; a window on every layer: Mistral).
 */
function checkpointFamily(spec: ModelSpec, baseArch: string | null): string {
  if (isGemmaSpec(spec)) return spec.qkNorm ? 'Gemma3' : 'Gemma2';
  const base = familyOf(baseArch);
  if (base !== undefined && base !== 'Llama' && base !== 'Gemma2' && base !== 'Gemma3') return base;
  if (spec.qkNorm) return 'Qwen3';
  if (spec.noRopeLayers !== undefined) return 'SmolLM3';
  if (spec.longRope !== undefined || (spec.rotaryDim !== undefined && spec.rotaryDim !== spec.headDim)) return 'Phi3';
  if (spec.slidingWindow !== undefined && spec.slidingLayers === undefined) return 'Mistral';
  return 'Llama';
}

function isGemmaSpec(spec: ModelSpec): boolean {
  return spec.sandwichNorms === true || spec.normWeightOffset === true || spec.hiddenAct === 'gelu_tanh';
}

/** What the family's config cannot say about the spec (it would reload as a different model). */
function unwritableFeatures(spec: ModelSpec, family: string): string[] {
  const gemma = family === 'Gemma2' || family === 'Gemma3';
  const out: string[] = [];
  if (gemma) {
    if (spec.hiddenAct !== 'gelu_tanh') out.push(`hiddenAct ${spec.hiddenAct ?? 'silu'}`);
    if (spec.sandwichNorms !== true) out.push('Llama-style norms (no sandwichNorms)');
    if (spec.normWeightOffset !== true) out.push('plain norm weights (no normWeightOffset)');
    if (spec.embedScale !== Math.fround(Math.sqrt(spec.hiddenSize))) out.push(`embedScale ${spec.embedScale ?? 1}`);
    if (spec.attentionBias) out.push('attentionBias');
    if (spec.ropeScaling !== null || spec.longRope !== undefined) out.push('RoPE scaling');
    if (spec.noRopeLayers !== undefined) out.push('noRopeLayers');
    if (spec.rotaryDim !== undefined && spec.rotaryDim !== spec.headDim) out.push('rotaryDim');
    if (family === 'Gemma2' && spec.ropeLocalTheta !== undefined) out.push('ropeLocalTheta');
    if (family === 'Gemma2' && spec.ropeLinearFactor !== undefined) out.push('ropeLinearFactor');
  } else {
    for (const key of ['embedScale', 'attnScale', 'attnSoftcap', 'finalSoftcap', 'ropeLocalTheta'] as const) if (spec[key] !== undefined) out.push(key);
    const anyLayers = family === 'Qwen2' || family === 'Qwen3';
    if (spec.slidingWindow !== undefined && !(anyLayers || (family === 'Mistral' && spec.slidingLayers === undefined))) {
      out.push(spec.slidingLayers === undefined ? 'slidingWindow' : 'slidingLayers');
    }
  }
  return out;
}

/** Per layer: does it attend within spec.slidingWindow? */
function slidingFlags(spec: ModelSpec): boolean[] {
  return Array.from({ length: spec.numLayers }, (_, i) => spec.slidingWindow !== undefined && (spec.slidingLayers?.includes(i) ?? true));
}

/** query_pre_attn_scalar with scalar ** -0.5 === attnScale: the base's, else a whole number when one fits. */
function queryPreAttnScalar(attnScale: number, base: unknown): number {
  if (typeof base === 'number' && base ** -0.5 === attnScale) return base;
  const q = attnScale ** -2;
  return Math.round(q) ** -0.5 === attnScale ? Math.round(q) : q;
}

/** Phi3Config's rope_scaling: exactly type, short_factor and long_factor (its validation rejects other keys), plus an
 * attention_factor only when it is not the default that transformers derives. */
function longRopeConfig(spec: ModelSpec): Record<string, unknown> {
  const lr = spec.longRope!;
  const scale = spec.maxPositionEmbeddings / lr.originalMaxPositionEmbeddings;
  const derived = Math.fround(scale <= 1 ? 1 : Math.sqrt(1 + Math.log(scale) / Math.log(lr.originalMaxPositionEmbeddings)));
  return {
    type: 'longrope',
    short_factor: [...lr.shortFactor],
    long_factor: [...lr.longFactor],
    ...(lr.attentionFactor !== derived ? { attention_factor: lr.attentionFactor } : {}),
  };
}

/**
 * Writes an HF checkpoint directory: config.json, model.safetensors (every tensor the loader expects for the spec,
 * with HF shapes: norms and biases 1-D), and the tokenizer files of tokenizerDir. Creates `dir` if needed.
 */
export async function writeHfCheckpoint(dir: string, ck: HfCheckpointToWrite): Promise<void> {
  const scoreLabels = ck.scoreLabels ?? null;
  const dtype = ck.dtype ?? 'F32';
  const shapes = expectedWeightShapes(ck.spec, scoreLabels);
  let tensors: TensorToWrite[] = [];
  for (const [name, shape] of shapes) {
    const data = ck.weights.get(name);
    if (data === undefined) throw new ModelLoadError(`cannot write the checkpoint: missing tensor ${name}`, dir);
    tensors.push({ name, shape, data });
  }
  const config = hfConfigFor(ck.spec, scoreLabels, ck.baseConfig ?? null, dtype);
  // A Phi-3 checkpoint stores q/k/v as one qkv_proj and gate/up as one gate_up_proj (Phi3Attention, Phi3MLP).
  if (Array.isArray(config.architectures) && String(config.architectures[0]).startsWith('Phi3')) tensors = fuseProjections(tensors, ck.spec);
  // A Gemma checkpoint stores each norm weight as w for a (1 + w) scale; the weights given hold 1 + w.
  tensors = removeNormWeightOffset(tensors, ck.spec);
  await mkdir(dir, { recursive: true });
  await writeSafetensorsFile(path.join(dir, SAFETENSORS_SINGLE_FILE), tensors, { dtype });
  await writeFileAtomic(path.join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  if (ck.tokenizerDir) {
    for (const f of TOKENIZER_FILES) {
      const src = path.join(ck.tokenizerDir, f);
      if (path.resolve(src) === path.resolve(path.join(dir, f)) || !(await isFile(src))) continue;
      await copyFile(src, path.join(dir, f));
      await chmod(path.join(dir, f), 0o644); // sources are often read-only; a later write must replace the copy
    }
  }
}
