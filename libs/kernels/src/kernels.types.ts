/**
 * The typed face of the native addon: shapes of what crosses into C++ and what comes back.
 * This file is the contract the engine (libs/model) codes against; the loader that finds the
 * built `.node` and the argument checks live beside it. It is not the kernels themselves (native/).
 */

/** Hyperparameters of a Llama-family decoder, in Hugging Face terms, already validated. */
export interface ModelSpec {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  /** Llama-3 style frequency scaling, or null for plain RoPE. */
  ropeScaling: Llama3RopeScaling | null;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias (Qwen2). */
  attentionBias: boolean;
  /** Per-head RMSNorm of queries and keys before RoPE, `self_attn.{q,k}_norm.weight` of (headDim) (Qwen3). */
  qkNorm?: boolean;
  maxPositionEmbeddings: number;
  /** RoPE rotates only the first rotaryDim dims of each head (Phi-4-mini's partial_rotary_factor 0.75); absent: headDim. */
  rotaryDim?: number;
  /** Layers whose attention skips RoPE (SmolLM3's NoPE layers, `no_rope_layers[i] === 0`), ascending; absent: none. */
  noRopeLayers?: number[];
  /** Phi-3 LongRoPE (rope_scaling type "longrope"); absent: none. Not combined with ropeScaling. */
  longRope?: LongRopeScaling;
  /** The MLP's gate activation: 'silu' (SwiGLU, the default) or 'gelu_tanh' (Gemma's GeGLU, gelu_pytorch_tanh). */
  hiddenAct?: 'silu' | 'gelu_tanh';
  /** Input embeddings are multiplied by this (Gemma: sqrt(hiddenSize) rounded to f32); absent: 1. A tied LM head reads the unscaled table. */
  embedScale?: number;
  /** Attention scores are q·k times this (Gemma's query_pre_attn_scalar ** -0.5); absent: 1 / sqrt(headDim). */
  attnScale?: number;
  /** Attention scores are soft-capped as cap * tanh(s / cap) before the mask (Gemma 2's attn_logit_softcapping); absent: none. */
  attnSoftcap?: number;
  /** Final logits are soft-capped likewise (Gemma 2's final_logit_softcapping); absent: none. */
  finalSoftcap?: number;
  /**
   * Gemma 2/3 sandwich norms: `post_attention_layernorm` normalises the attention output before its residual add,
   * `pre_feedforward_layernorm` is the MLP's input norm and `post_feedforward_layernorm` normalises the MLP output
   * before its residual add. Absent: Llama's two norms (`post_attention_layernorm` is the MLP's input norm).
   */
  sandwichNorms?: boolean;
  /**
   * Hugging Face checkpoints store every RMSNorm weight (q/k norms included) as w where the model scales by (1 + w)
   * (Gemma). The safetensors loader adds 1 and the writer subtracts it, so the engine, the trainer and GGUF (whose
   * converter already adds it) see plain RMSNorm weights.
   */
  normWeightOffset?: boolean;
  /**
   * Sliding-window attention: a query at position p attends to keys at positions p - slidingWindow + 1 .. p, on the
   * layers in slidingLayers (ascending), or on every layer when slidingLayers is absent; absent: full attention.
   */
  slidingWindow?: number;
  slidingLayers?: number[];
  /** RoPE base of the sliding layers, unscaled (Gemma 3's rope_local_base_freq); absent: as every other layer. */
  ropeLocalTheta?: number;
  /**
   * Linear RoPE scaling (rope_scaling type "linear"): positions divided by this, on every layer but those that take
   * ropeLocalTheta (Gemma 3 4B and larger: 8 on the full-attention layers); absent: 1. Not combined with ropeScaling
   * or longRope.
   */
  ropeLinearFactor?: number;
}

/**
 * Phi-3 LongRoPE: frequency j of the rotated dims is divided by shortFactor[j] at positions below
 * originalMaxPositionEmbeddings and by longFactor[j] from there on (per token; transformers picks one set per forward
 * call, long when its largest position + 1 exceeds originalMaxPositionEmbeddings: the same for token-by-token decoding
 * and for prompts that fit), and cos/sin are multiplied by attentionFactor.
 */
export interface LongRopeScaling {
  /** rotaryDim / 2 divisors each. */
  shortFactor: number[];
  longFactor: number[];
  originalMaxPositionEmbeddings: number;
  /** transformers' default: sqrt(1 + ln(maxPositionEmbeddings / original) / ln(original)), 1 when not extended. */
  attentionFactor: number;
}

export interface Llama3RopeScaling {
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/** The GGML block formats the engine stores and multiplies natively (ggml-common.h layouts, byte for byte). */
export type QuantType = 'q8_0' | 'q4_0' | 'q4_1' | 'q5_0' | 'q5_1' | 'q4_k' | 'q5_k' | 'q6_k';
export const QUANT_TYPES: readonly QuantType[] = ['q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q4_k', 'q5_k', 'q6_k'];

/** Weights per block and bytes per block of each QuantType (K-quants: super-blocks of 256). */
export const QUANT_BLOCKS: Readonly<Record<QuantType, { elems: number; bytes: number }>> = {
  q8_0: { elems: 32, bytes: 34 },
  q4_0: { elems: 32, bytes: 18 },
  q4_1: { elems: 32, bytes: 20 },
  q5_0: { elems: 32, bytes: 22 },
  q5_1: { elems: 32, bytes: 24 },
  q4_k: { elems: 256, bytes: 144 },
  q5_k: { elems: 256, bytes: 176 },
  q6_k: { elems: 256, bytes: 210 },
};

/**
 * Storage type of the big weight matrices inside the engine; activations and KV are always f32. With a quantized
 * type every matrix (embedding included) whose rows its blocks divide is stored in it and multiplied with int8
 * activations; a matrix whose rows are not falls back to q8_0 (rows a multiple of 32) or f32.
 */
export type WeightDtype = 'f32' | 'bf16' | QuantType;

export function isQuantType(t: unknown): t is QuantType {
  return typeof t === 'string' && (QUANT_TYPES as readonly string[]).includes(t);
}

/** Bytes of one GGML Q8_0 block: an f16 scale then 32 int8 weights. */
export const Q8_0_BLOCK_BYTES = 34;

/**
 * A 2-D weight (rows, cols) kept as GGML blocks of one type, byte for byte as a GGUF file holds it: row-major,
 * cols / elems blocks per row, `blocks.length === rows * cols / elems * bytes` (QUANT_BLOCKS).
 */
export interface QuantTensor {
  readonly dtype: QuantType;
  readonly blocks: Uint8Array;
}
/** A QuantTensor of Q8_0 blocks. */
export type Q8_0Tensor = QuantTensor & { readonly dtype: 'q8_0' };

/** What the serving engine takes: a WeightMap whose matrices may also come as GGML blocks (GGUF files). */
export type ServingWeightMap = ReadonlyMap<string, Float32Array | QuantTensor>;

/**
 * Weights by their Hugging Face names (`model.embed_tokens.weight`, `model.layers.0.self_attn.q_proj.weight`, ...),
 * as row-major f32 in HF layout (Linear weight = (out_features, in_features)). `lm_head.weight` is absent when tied.
 */
export type WeightMap = ReadonlyMap<string, Float32Array>;

declare const modelBrand: unique symbol;
declare const cacheBrand: unique symbol;
/** Opaque handle to weights living in native memory. */
export type ModelHandle = { readonly [modelBrand]: true };
/** Opaque handle to a paged KV cache: per layer K and V pools of (numBlocks, blockSize, numKvHeads, headDim) f32. */
export type KvCacheHandle = { readonly [cacheBrand]: true };

/**
 * One engine step, flattened like vLLM: T tokens from S sequences (decode tokens and prefill chunks mixed).
 * Tokens of one sequence are contiguous and in position order. Before attention, the K/V of every token in the
 * batch are written to its slot: blockTables[s * maxBlocksPerSeq + floor(pos / blockSize)] * blockSize + pos % blockSize.
 * Token t of sequence s attends causally to positions 0..positions[t] of s, through its block table.
 */
export interface StepBatch {
  /** (T) token ids */
  tokens: Int32Array;
  /** (T) absolute position of each token in its sequence */
  positions: Int32Array;
  /** (T) index into the S sequences of this step */
  seqIndex: Int32Array;
  /** (S, maxBlocksPerSeq) physical block ids; unused tail entries are -1 */
  blockTables: Int32Array;
  maxBlocksPerSeq: number;
  /** (L) rows of the batch to compute logits for (usually each sequence's last token in this step) */
  logitRows: Int32Array;
}
