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
  maxPositionEmbeddings: number;
}

export interface Llama3RopeScaling {
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

/**
 * Storage type of the big weight matrices inside the engine; activations and KV are always f32. With 'q8_0' every
 * matrix (embedding included) whose rows are a multiple of 32 is GGML Q8_0 blocks multiplied with int8 activations;
 * a matrix whose rows are not stays f32.
 */
export type WeightDtype = 'f32' | 'bf16' | 'q8_0';

/** Bytes of one GGML Q8_0 block: an f16 scale then 32 int8 weights. */
export const Q8_0_BLOCK_BYTES = 34;

/**
 * A 2-D weight (rows, cols) kept as GGML Q8_0 blocks, byte for byte as a GGUF file holds it: row-major, cols/32
 * blocks per row, `blocks.length === rows * cols / 32 * 34`.
 */
export interface Q8_0Tensor {
  readonly dtype: 'q8_0';
  readonly blocks: Uint8Array;
}

/** What the serving engine takes: a WeightMap whose matrices may also come as Q8_0 blocks (GGUF files). */
export type ServingWeightMap = ReadonlyMap<string, Float32Array | Q8_0Tensor>;

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
