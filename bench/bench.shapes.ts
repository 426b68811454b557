/**
 * What the benchmarks share: the SmolLM2-135M hyperparameters our speed targets are stated for (a model people serve), a
 * larger made-up shape whose every matrix row is a multiple of 256 (so K-quants apply everywhere), the seeded random
 * weights they run on (a fast xorshift fill, so generating 135M weights takes about a second), and the check of their
 * numeric options.
 */
import { expectedWeightShapes, Xorshift32, type ModelSpec } from '../libs/kernels/src';
import { modelSpecFromConfig } from '../libs/model/src/loading';

export const SMOLLM2_135M: ModelSpec = {
  vocabSize: 49152,
  hiddenSize: 576,
  intermediateSize: 1536,
  numLayers: 30,
  numHeads: 9,
  numKvHeads: 3,
  headDim: 64,
  rmsNormEps: 1e-5,
  ropeTheta: 100000,
  ropeScaling: null,
  tieWordEmbeddings: true,
  attentionBias: false,
  maxPositionEmbeddings: 8192,
};

/**
 * Not a real checkpoint: a Llama-architecture shape the size of Qwen2.5-0.5B's decoder (24 layers, GQA 8:1, head_dim
 * 64, tied embeddings) with hidden 1024 and feed-forward 2816 (11 x 256) instead of Qwen's 896 and 4864, and a 32768
 * vocabulary instead of 151936, so every matrix row is a multiple of 256 and the model is ~298M parameters (24 x 11.0M
 * + 33.6M embedding). No q/k/v bias: it is written and served as a plain llama model.
 */
export const QWEN_05B_LIKE: ModelSpec = {
  vocabSize: 32768,
  hiddenSize: 1024,
  intermediateSize: 2816,
  numLayers: 24,
  numHeads: 16,
  numKvHeads: 2,
  headDim: 64,
  rmsNormEps: 1e-6,
  ropeTheta: 1000000,
  ropeScaling: null,
  tieWordEmbeddings: true,
  attentionBias: false,
  maxPositionEmbeddings: 32768,
};

/**
 * Gemma 3 1B's decoder from its Gemma3TextConfig, read by the real config parser (26 layers, 4 heads on 1 KV head of 256, GeGLU 6912, q/k norms,
 * sandwich norms, 5 sliding layers of 512 to 1 global, local RoPE base 1e4), with a 32768 vocabulary instead of 262144
 * so that random weights stay quick to make (~0.7B parameters). Its hidden size 1152 is 4.5 x 256: K-quants fall back
 * to Q8_0 on the matrices that read it, as llama-quantize falls back to Q5_0/Q8_0 for Gemma 3 1B.
 */
export const GEMMA3_1B_LIKE: ModelSpec = modelSpecFromConfig({
  architectures: ['Gemma3ForCausalLM'],
  model_type: 'gemma3_text',
  vocab_size: 32768,
  hidden_size: 1152,
  intermediate_size: 6912,
  num_hidden_layers: 26,
  num_attention_heads: 4,
  num_key_value_heads: 1,
  head_dim: 256,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  rope_local_base_freq: 10000,
  sliding_window: 512,
  query_pre_attn_scalar: 256,
  max_position_embeddings: 32768,
  tie_word_embeddings: true,
});

/** The shapes `--shape` picks from, by the name the benchmarks report. */
export const BENCH_SHAPES: Record<string, ModelSpec> = { 'smollm2-135m': SMOLLM2_135M, 'qwen-0.5b-like': QWEN_05B_LIKE, 'gemma3-1b-like': GEMMA3_1B_LIKE };

/** Seeded weights: N(0,1)-ish * 1/sqrt(fan_in) for matrices, ~1 for norms. Fast xorshift fill. */
export function randomWeights(spec: ModelSpec, seed: number): Map<string, Float32Array> {
  const rng = new Xorshift32(seed);
  const weights = new Map<string, Float32Array>();
  for (const [name, [rows, cols = 1]] of expectedWeightShapes(spec)) {
    const a = new Float32Array(rows * cols);
    const isNorm = cols === 1;
    const scale = isNorm ? 0.1 : 1.7 / Math.sqrt(cols);
    for (let i = 0; i < a.length; i++) a[i] = (isNorm ? 1 : 0) + (rng.next() - 0.5) * scale;
    weights.set(name, a);
  }
  return weights;
}

/** A numeric option's value: a positive integer, or an error naming the option. */
export function positiveInt(v: string | undefined, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer`);
  return n;
}
