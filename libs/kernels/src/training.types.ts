/**
 * The types of the native training path's TypeScript API: the trainable-model handle, batches and targets, the
 * AdamW configuration and state, LoRA options, and what a policy forward returns. Types and the default optimizer
 * only; the functions are in trainable-model.ts and training.{steps,optimizer,state,ops}.ts.
 */
import type { ModelSpec, WeightMap } from './kernels.types';
import type { LoraTarget } from './weight-shapes';

declare const trainableBrand: unique symbol;
/** Opaque handle to a trainable model (weights, gradients, AdamW moments) in native memory. */
export type TrainableModelHandle = { readonly [trainableBrand]: true };

export interface TensorLayout {
  name: string;
  /** HF layout; vectors (norms, biases) are [n, 1]. */
  shape: [number, number];
  offset: number;
}

export interface LoraOptions {
  /** Rank r of each adapter: A is (r, in), B is (out, r). */
  rank: number;
  /** The update is scaled by alpha / rank (PEFT's lora_alpha); default 2 * rank. */
  alpha?: number;
  /** Projections that get an adapter in every layer; default all seven. */
  targets?: readonly LoraTarget[];
  /** Seed of A's initialisation (uniform in +-1/sqrt(in), as PEFT's kaiming_uniform(a=sqrt(5))); default 0. */
  seed?: number;
}

/** The resolved LoRA configuration of a model. */
export interface LoraInfo {
  rank: number;
  alpha: number;
  /** alpha / rank as the native path applies it (f32). */
  scale: number;
  targets: LoraTarget[];
}

export interface CreateTrainableOptions {
  /** Native worker threads (the calling thread included); default: hardware cores. */
  threads?: number;
  /**
   * Rows of a scalar head `score.weight` (num_labels, hidden) read at each row's last real token, as HF
   * LlamaForSequenceClassification; must then be in the weight map. 0 (default): no scalar head.
   */
  numLabels?: number;
  /**
   * LoRA: every base tensor is frozen (no gradient, no AdamW moments, never changed) and each targeted projection
   * W of every layer gets trainable A (r, in) and B (out, r): y = x W^T + alpha/r * (x A^T) B^T. The score head,
   * when present, stays trainable. Adapters found in `weights` under their PEFT names (loraAdapterShapes) are used
   * as given (all or none); otherwise A is random and B zero, so the model starts equal to the base.
   */
  lora?: LoraOptions;
  /**
   * Forward only (reward scoring, PPO/DPO reference models, eval): no gradients, no AdamW moments, and one layer's
   * activations reused by every layer instead of the per-layer set a backward reads. Scores, log-probs and LM
   * losses are bit-identical to a trainable model's; every call that writes or reads gradients or optimizer state,
   * and setWeights, fails. With lora the adapters must be in `weights` (a fresh adapter is the base model).
   */
  frozen?: boolean;
}

/**
 * B sequences of T slots, row-major (B*T). mask is 1 for a real token and 0 for padding (left or right); padded
 * slots must still hold a valid token id. positions default to the count of real tokens before each slot
 * (HF's cumsum(mask) - 1, clamped at 0).
 */
export interface TrainBatch {
  B: number;
  T: number;
  tokens: Int32Array;
  mask: Int32Array;
  positions?: Int32Array;
}

/** Next-token targets and per-token loss weights, (B*T) each; loss = sum(w * CE) / sum(w) over slots with w != 0. */
export interface LmTargets {
  targets: Int32Array;
  weights: Float32Array;
}

export interface OptimizerConfig {
  /** Peak learning rate. */
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled (AdamW) decay on matrices; norms and biases are never decayed. */
  weightDecay: number;
  /** Global gradient-norm clip (torch clip_grad_norm_); <= 0 disables. */
  maxGradNorm: number;
  /** Linear warmup: step s < warmupSteps uses lr * (s+1) / warmupSteps. */
  warmupSteps: number;
  /** Cosine decay to lr * minLrRatio at totalSteps; <= 0 keeps lr after warmup. */
  totalSteps: number;
  minLrRatio: number;
}

export const DEFAULT_OPTIMIZER: OptimizerConfig = {
  lr: 3e-4,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: 0.1,
  maxGradNorm: 1.0,
  warmupSteps: 0,
  totalSteps: 0,
  minLrRatio: 0.1,
};

export interface OptimizerStepResult {
  /** Global L2 norm of the accumulated gradients before clipping. */
  gradNorm: number;
  lr: number;
  /** Optimizer steps taken so far (after this one). */
  step: number;
}

/** AdamW moments and step, by parameter name, for resume. */
export interface OptimizerState {
  step: number;
  m: WeightMap;
  v: WeightMap;
}

export interface TrainableModelInfo {
  spec: ModelSpec;
  numLabels: number;
  /** Trainable floats (with LoRA: the adapters and a score head). */
  numParams: number;
  /** Frozen floats (the base model under LoRA; 0 without). */
  frozenParams: number;
  lora: LoraInfo | null;
  /** Created with frozen: true (forward only). */
  frozen: boolean;
  step: number;
  threads: number;
  /** The trainable tensors (what getWeights / getGrads / the optimizer state hold). */
  tensors: TensorLayout[];
  /** Native memory the model holds now. */
  allocatedBytes: TrainableMemory;
}

/**
 * Bytes of native memory a trainable model holds (allocated capacity). Activations are kept from the largest batch
 * seen (0 before the first step); a single step's temporaries (logits, backward scratch) are not counted.
 */
export interface TrainableMemory {
  /** Every weight: the trainable tensors and, under LoRA, the frozen base. */
  params: number;
  /** Gradients (0 for a frozen model). */
  grads: number;
  /** AdamW first and second moments (0 for a frozen model). */
  moments: number;
  /** Activations kept between a forward and its backward (one layer's for a frozen model). */
  activations: number;
  total: number;
}

/** Which next-token log-probabilities a policy forward gathers: targets (B*T) and sel (B*T, 1 = gather this slot). */
export interface PolicyTargets {
  targets: Int32Array;
  sel: Int32Array;
  /** Also read the scalar head (one label: a critic) at every slot. */
  values?: boolean;
}

declare const passBrand: unique symbol;
/** Names one policyForward's kept activations; policyBackward accepts it once, before any other step runs. */
export type PolicyPass = { readonly [passBrand]: true; readonly id: number; readonly n: number };

export interface PolicyForwardResult {
  /** log p(targets[i] | tokens[..i]) at selected slots, 0 elsewhere (B*T). */
  logp: Float32Array;
  /** Entropy (nats) of the next-token distribution at selected slots, 0 elsewhere (B*T). */
  entropy: Float32Array;
  /** Scalar-head value at every slot (B*T) when asked for. */
  values?: Float32Array;
  pass: PolicyPass;
}
