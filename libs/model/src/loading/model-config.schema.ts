/**
 * The zod schema of a Hugging Face `config.json` for the Llama family (Llama, Qwen2, Qwen3, Mistral, SmolLM3, Phi-3,
 * Gemma 2, text-only Gemma 3, and reward models as Llama/Qwen2/Qwen3/SmolLM3/Phi3/Gemma2ForSequenceClassification and
 * Gemma3TextForSequenceClassification), and its translation into the engine's `ModelSpec`. Defaults follow transformers'
 * LlamaConfig / Qwen2Config / Qwen3Config / MistralConfig / SmolLM3Config / Phi3Config / Gemma2Config / Gemma3TextConfig. It reads no files and knows nothing
 * about weights (Phi-3's fused projections are fused-projections.ts's, Gemma's stored norm weights w, scaling by
 * 1 + w, gemma-norms.ts's); anything the engine cannot run (other RoPE types, MLP bias, ...) is rejected here.
 */
import { z } from 'zod';
import type { Llama3RopeScaling, LongRopeScaling, ModelSpec } from '@flywheel/kernels';
import { ModelLoadError } from './model-load.error';

export const SUPPORTED_ARCHITECTURES = [
  'LlamaForCausalLM',
  'Qwen2ForCausalLM',
  'MistralForCausalLM',
  'LlamaForSequenceClassification',
  'Qwen2ForSequenceClassification',
  'Qwen3ForCausalLM',
  'Qwen3ForSequenceClassification',
  'SmolLM3ForCausalLM',
  'SmolLM3ForSequenceClassification',
  'Phi3ForCausalLM',
  'Phi3ForSequenceClassification',
  'Gemma2ForCausalLM',
  'Gemma2ForSequenceClassification',
  'Gemma3ForCausalLM',
  // transformers' text-only Gemma 3 classifier (Gemma3TextConfig); its Gemma3ForSequenceClassification is multimodal.
  'Gemma3TextForSequenceClassification',
] as const;
export type SupportedArchitecture = (typeof SUPPORTED_ARCHITECTURES)[number];

const CAUSAL_LM_ARCHITECTURES =
  'LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM, SmolLM3ForCausalLM, Phi3ForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM';

const MODEL_TYPE_TO_ARCHITECTURE: Record<string, SupportedArchitecture> = {
  llama: 'LlamaForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
  mistral: 'MistralForCausalLM',
  smollm3: 'SmolLM3ForCausalLM',
  phi3: 'Phi3ForCausalLM',
  gemma2: 'Gemma2ForCausalLM',
  gemma3_text: 'Gemma3ForCausalLM',
};

/** Gemma's MLP activation names (`hidden_activation`) that mean GELU with the tanh approximation. */
const GELU_TANH_ACTIVATIONS = ['gelu_pytorch_tanh', 'gelu_tanh'];

const positiveInt = z.int().positive();
const tokenIdOrList = z.union([z.int().nonnegative(), z.array(z.int().nonnegative())]).nullish();

/** `rope_scaling` (transformers ≤ 4) or `rope_parameters` (transformers 5); `type` is the pre-4.45 spelling. */
const ropeTypeParametersSchema = z.looseObject({
  rope_type: z.string().optional(),
  type: z.string().optional(),
  rope_theta: z.number().positive().optional(),
  factor: z.number().positive().optional(),
  low_freq_factor: z.number().positive().optional(),
  high_freq_factor: z.number().positive().optional(),
  original_max_position_embeddings: positiveInt.optional(),
  // Phi-3 "longrope" (rotaryDim / 2 divisors each) and its optional attention factor override.
  short_factor: z.array(z.number().positive()).optional(),
  long_factor: z.array(z.number().positive()).optional(),
  attention_factor: z.number().positive().optional(),
  partial_rotary_factor: z.number().optional(),
});
/** transformers 5 keeps Gemma 3's two RoPEs as rope_parameters.{full_attention, sliding_attention}. */
const ropeParametersSchema = ropeTypeParametersSchema.extend({
  full_attention: ropeTypeParametersSchema.optional(),
  sliding_attention: ropeTypeParametersSchema.optional(),
});

export const hfModelConfigSchema = z.looseObject({
  architectures: z.array(z.string()).min(1).nullish(),
  model_type: z.string().optional(),
  vocab_size: positiveInt,
  hidden_size: positiveInt,
  intermediate_size: positiveInt,
  num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt,
  num_key_value_heads: positiveInt.nullish(),
  head_dim: positiveInt.nullish(),
  hidden_act: z.string().optional(),
  // Gemma2Config / Gemma3TextConfig name the MLP activation this way (and ignore hidden_act).
  hidden_activation: z.string().nullish(),
  max_position_embeddings: positiveInt.optional(),
  rms_norm_eps: z.number().positive().optional(),
  rope_theta: z.number().positive().optional(),
  rope_scaling: ropeParametersSchema.nullish(),
  rope_parameters: ropeParametersSchema.nullish(),
  partial_rotary_factor: z.number().optional(),
  original_max_position_embeddings: positiveInt.optional(),
  no_rope_layers: z.array(z.int()).optional(),
  no_rope_layer_interval: positiveInt.optional(),
  layer_types: z.array(z.string()).nullish(),
  tie_word_embeddings: z.boolean().optional(),
  attention_bias: z.boolean().optional(),
  mlp_bias: z.boolean().optional(),
  use_sliding_window: z.boolean().optional(),
  sliding_window: positiveInt.nullish(),
  // Qwen2Config / Qwen3Config: with use_sliding_window, layers from this index on slide.
  max_window_layers: z.int().nonnegative().nullish(),
  // Gemma 2 / 3.
  query_pre_attn_scalar: z.number().positive().nullish(),
  attn_logit_softcapping: z.number().positive().nullish(),
  final_logit_softcapping: z.number().positive().nullish(),
  rope_local_base_freq: z.number().positive().nullish(),
  sliding_window_pattern: positiveInt.nullish(),
  bos_token_id: tokenIdOrList,
  eos_token_id: tokenIdOrList,
  pad_token_id: tokenIdOrList,
  torch_dtype: z.string().nullish(),
  dtype: z.string().nullish(),
  num_labels: positiveInt.optional(),
  id2label: z.record(z.string(), z.string()).optional(),
});
export type HfModelConfigJson = z.infer<typeof hfModelConfigSchema>;

/** What the loaders need from config.json beyond the ModelSpec. */
export interface ModelConfig {
  architecture: SupportedArchitecture;
  spec: ModelSpec;
  bosTokenId: number | null;
  /** config.json's eos_token_id as a list (may be empty); generation_config.json can override it. */
  eosTokenIds: number[];
  padTokenId: number | null;
  /** `torch_dtype` (or transformers 5 `dtype`) as written, e.g. "bfloat16"; null when absent. */
  torchDtype: string | null;
  /** Outputs of the score head for LlamaForSequenceClassification; null for causal LMs. */
  numLabels: number | null;
  /**
   * The sliding-window span the engine applies, `spec.slidingWindow` (Mistral v0.1, Qwen2/Qwen3 with
   * use_sliding_window, Gemma's sliding layers: on `spec.slidingLayers` when present, else on every layer); null when
   * every layer attends to the whole context. Phi-3's sliding_window is not applied (llama.cpp does not either).
   */
  slidingWindow: number | null;
}

/** Per-family defaults from transformers (LlamaConfig, Qwen2Config, MistralConfig `__init__`). */
const FAMILY_DEFAULTS: Record<SupportedArchitecture, { maxPositionEmbeddings: number; rmsNormEps: number }> = {
  LlamaForCausalLM: { maxPositionEmbeddings: 2048, rmsNormEps: 1e-6 },
  LlamaForSequenceClassification: { maxPositionEmbeddings: 2048, rmsNormEps: 1e-6 },
  Qwen2ForSequenceClassification: { maxPositionEmbeddings: 32768, rmsNormEps: 1e-6 },
  Qwen2ForCausalLM: { maxPositionEmbeddings: 32768, rmsNormEps: 1e-6 },
  MistralForCausalLM: { maxPositionEmbeddings: 4096 * 32, rmsNormEps: 1e-6 },
  Qwen3ForCausalLM: { maxPositionEmbeddings: 32768, rmsNormEps: 1e-6 },
  Qwen3ForSequenceClassification: { maxPositionEmbeddings: 32768, rmsNormEps: 1e-6 },
  SmolLM3ForCausalLM: { maxPositionEmbeddings: 32768, rmsNormEps: 1e-6 },
  SmolLM3ForSequenceClassification: { maxPositionEmbeddings: 32768, rmsNormEps: 1e-6 },
  Phi3ForCausalLM: { maxPositionEmbeddings: 4096, rmsNormEps: 1e-5 },
  Phi3ForSequenceClassification: { maxPositionEmbeddings: 4096, rmsNormEps: 1e-5 },
  Gemma2ForCausalLM: { maxPositionEmbeddings: 8192, rmsNormEps: 1e-6 },
  Gemma2ForSequenceClassification: { maxPositionEmbeddings: 8192, rmsNormEps: 1e-6 },
  Gemma3ForCausalLM: { maxPositionEmbeddings: 131072, rmsNormEps: 1e-6 },
  Gemma3TextForSequenceClassification: { maxPositionEmbeddings: 131072, rmsNormEps: 1e-6 },
};

/**
 * Gemma's generation (2 or 3) for its causal LM and its reward model, else null. The classifiers (transformers'
 * GenericForSequenceClassification) put `score` on the base model's final-normed hidden states: Gemma 2's
 * final_logit_softcapping caps lm_head logits only, never the score.
 */
function gemmaGeneration(architecture: SupportedArchitecture): 2 | 3 | null {
  if (architecture.startsWith('Gemma2')) return 2;
  if (architecture.startsWith('Gemma3')) return 3;
  return null;
}

/** Parses config.json content into a validated ModelConfig; `file` only labels errors. */
export function parseModelConfig(json: unknown, file: string | null = null): ModelConfig {
  const fail = (message: string): never => {
    throw new ModelLoadError(message, file);
  };
  const parsed = hfModelConfigSchema.safeParse(textOnlyGemma3(json, fail));
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
    throw new ModelLoadError(`invalid config.json: ${issues}`, file);
  }
  const c = parsed.data;

  const architecture = resolveArchitecture(c, fail);
  const defaults = FAMILY_DEFAULTS[architecture];
  const isQwen2 = architecture === 'Qwen2ForCausalLM' || architecture === 'Qwen2ForSequenceClassification';
  const isQwen3 = architecture === 'Qwen3ForCausalLM' || architecture === 'Qwen3ForSequenceClassification';
  const isSmolLM3 = architecture.startsWith('SmolLM3');
  const isPhi3 = architecture.startsWith('Phi3');
  const gemma = gemmaGeneration(architecture);

  if (gemma !== null) {
    // Gemma2MLP / Gemma3MLP: ACT2FN[hidden_activation]; hidden_act is not read.
    const act = c.hidden_activation ?? 'gelu_pytorch_tanh';
    if (!GELU_TANH_ACTIVATIONS.includes(act)) {
      fail(`unsupported hidden_activation "${act}" for ${architecture}; Flywheel's GeGLU MLP needs "gelu_pytorch_tanh"`);
    }
    if (c.attention_bias === true) fail(`unsupported attention_bias: true for ${architecture}; Flywheel's Gemma attention has no bias`);
  } else if (c.hidden_act !== undefined && c.hidden_act !== 'silu') {
    fail(`unsupported hidden_act "${c.hidden_act}"; Flywheel's SwiGLU MLP needs "silu"`);
  }
  if (c.mlp_bias === true) fail('unsupported mlp_bias: true; Flywheel MLPs have no bias');
  const partialRotary = c.partial_rotary_factor ?? c.rope_parameters?.partial_rotary_factor ?? 1;
  if (!isPhi3 && partialRotary !== 1) {
    fail(`unsupported partial_rotary_factor ${partialRotary} for ${architecture}; RoPE must cover the whole head (only Phi3 rotates part of it)`);
  }

  const numHeads = c.num_attention_heads;
  const numKvHeads = c.num_key_value_heads ?? numHeads;
  if (numHeads % numKvHeads !== 0) {
    fail(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  }
  if (c.head_dim == null && !isQwen3 && gemma === null && c.hidden_size % numHeads !== 0) {
    fail(`hidden_size ${c.hidden_size} is not divisible by num_attention_heads ${numHeads} and head_dim is absent`);
  }
  // Qwen3Config defaults head_dim to 128, Gemma2Config and Gemma3TextConfig to 256, whatever hidden_size / heads is.
  const headDim = c.head_dim ?? (isQwen3 ? 128 : gemma !== null ? 256 : c.hidden_size / numHeads);
  if (headDim % 2 !== 0) fail(`head_dim ${headDim} is odd; RoPE needs an even head_dim`);

  // Phi3RotaryEmbedding: dim = int(head_dim * partial_rotary_factor) (Phi-4-mini: 0.75 of 128 = 96).
  const rotaryDim = Math.trunc(headDim * partialRotary);
  if (rotaryDim < 2 || rotaryDim > headDim || rotaryDim % 2 !== 0) {
    fail(`partial_rotary_factor ${partialRotary} gives ${rotaryDim} rotated dims of head_dim ${headDim}; it must be even and at least 2`);
  }

  const maxPositionEmbeddings = c.max_position_embeddings ?? defaults.maxPositionEmbeddings;
  let ropeTheta: number;
  let ropeScaling: Llama3RopeScaling | null = null;
  let longRope: LongRopeScaling | null = null;
  let ropeLocalTheta: number | null = null;
  let ropeLinearFactor: number | null = null;
  if (gemma !== null) {
    ({ ropeTheta, ropeLocalTheta, ropeLinearFactor } = gemmaRope(c, architecture, gemma, fail));
  } else {
    const rope = c.rope_parameters ?? c.rope_scaling ?? null;
    ropeTheta = c.rope_theta ?? c.rope_parameters?.rope_theta ?? (isSmolLM3 ? 2000000 : 10000);
    const ropeType = rope === null ? 'default' : (rope.rope_type ?? rope.type ?? 'default');
    // Phi3Config renames the "su" and "yarn" of early Phi-3 configs to "longrope".
    const isLongRope = isPhi3 && ['longrope', 'su', 'yarn'].includes(ropeType);
    longRope = isLongRope && rope !== null ? parseLongRope(rope, c, rotaryDim, maxPositionEmbeddings, fail) : null;
    if (ropeType === 'linear' && !isPhi3) ropeLinearFactor = linearFactor(rope, fail);
    else ropeScaling = isLongRope ? null : parseRopeScaling(rope, fail);
  }

  if (isSmolLM3 && c.use_sliding_window === true && c.sliding_window != null) {
    fail('unsupported use_sliding_window: true for SmolLM3 (sliding attention on its NoPE layers); Flywheel attends to the whole context');
  }
  const sliding = slidingAttentionOf(c, architecture, fail);
  const noRopeLayers = isSmolLM3 ? smolLM3NoRopeLayers(c, fail) : [];

  const spec: ModelSpec = {
    vocabSize: c.vocab_size,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    numLayers: c.num_hidden_layers,
    numHeads,
    numKvHeads,
    headDim,
    rmsNormEps: c.rms_norm_eps ?? defaults.rmsNormEps,
    ropeTheta,
    ropeScaling,
    // LlamaConfig, Qwen2Config, Qwen3Config, MistralConfig and Phi3Config default tie_word_embeddings to false,
    // SmolLM3Config, Gemma2Config and Gemma3TextConfig to true.
    tieWordEmbeddings: c.tie_word_embeddings ?? (isSmolLM3 || gemma !== null),
    // Qwen2Attention hard-codes bias=True on q/k/v and ignores attention_bias; Phi3Attention has no bias at all.
    attentionBias: isQwen2 ? true : isPhi3 ? false : (c.attention_bias ?? false),
    maxPositionEmbeddings,
    // Qwen3Attention normalises every query and key head (q_norm, k_norm) before RoPE.
    ...(isQwen3 ? { qkNorm: true } : {}),
    ...(rotaryDim < headDim ? { rotaryDim } : {}),
    ...(noRopeLayers.length > 0 ? { noRopeLayers } : {}),
    ...(longRope !== null ? { longRope } : {}),
    ...(ropeLinearFactor !== null && ropeLinearFactor !== 1 ? { ropeLinearFactor } : {}),
    ...(gemma !== null
      ? gemmaSpecFields({
          generation: gemma,
          hiddenSize: c.hidden_size,
          queryPreAttnScalar: c.query_pre_attn_scalar ?? 256,
          // Gemma2Config defaults the caps to 50 and 30 (null turns one off), Gemma3TextConfig to null.
          attnSoftcap: c.attn_logit_softcapping === undefined ? (gemma === 2 ? 50 : null) : c.attn_logit_softcapping,
          finalSoftcap: c.final_logit_softcapping === undefined ? (gemma === 2 ? 30 : null) : c.final_logit_softcapping,
          ropeLocalTheta,
          sliding,
        })
      : sliding),
  };

  return {
    architecture,
    spec,
    bosTokenId: firstId(c.bos_token_id),
    eosTokenIds: idList(c.eos_token_id),
    padTokenId: firstId(c.pad_token_id),
    torchDtype: c.torch_dtype ?? c.dtype ?? null,
    numLabels:
      architecture.endsWith('ForSequenceClassification')
        ? (c.num_labels ?? (c.id2label ? Object.keys(c.id2label).length : 2))
        : null,
    slidingWindow: spec.slidingWindow ?? null,
  };
}

/** Shorthand when only the ModelSpec is wanted. */
export function modelSpecFromConfig(json: unknown, file: string | null = null): ModelSpec {
  return parseModelConfig(json, file).spec;
}

/**
 * transformers' Gemma3Config (model_type "gemma3") wraps a Gemma3TextConfig in `text_config` beside a vision tower.
 * A text-only one (no vision_config; architectures absent or Gemma3ForCausalLM) is read as its text config with the
 * top-level fields it lacks; a multimodal one is refused, and so is its classifier Gemma3ForSequenceClassification
 * (Gemma3Model: vision tower, model.language_model.* weights). A model_type "gemma3_text" config that names
 * Gemma3ForSequenceClassification is the text-only classifier: transformers' AutoModelForSequenceClassification picks
 * the class by config type, Gemma3TextForSequenceClassification for a Gemma3TextConfig.
 */
function textOnlyGemma3(json: unknown, fail: (m: string) => never): unknown {
  if (!isRecord(json)) return json;
  const archs = Array.isArray(json.architectures) ? json.architectures : [];
  const classifier = archs.length === 1 && archs[0] === 'Gemma3ForSequenceClassification';
  if (classifier && json.model_type === 'gemma3_text') return { ...json, architectures: ['Gemma3TextForSequenceClassification'] };
  if (classifier) {
    fail(
      `unsupported architecture Gemma3ForSequenceClassification with model_type ${JSON.stringify(json.model_type)} (the multimodal Gemma 3 classifier: ` +
        'a vision tower and model.language_model.* weights); Flywheel scores with text-only Gemma 3 reward models ' +
        '(Gemma3TextForSequenceClassification, model_type "gemma3_text")',
    );
  }
  if (json.model_type !== 'gemma3' && !archs.includes('Gemma3ForConditionalGeneration')) return json;
  if (archs.some((a) => a !== 'Gemma3ForCausalLM') || json.vision_config != null) {
    fail(
      'unsupported architecture Gemma3ForConditionalGeneration (multimodal Gemma 3: a vision tower and language_model.* weights); ' +
        'Flywheel serves text-only Gemma 3 (Gemma3ForCausalLM, model_type "gemma3_text", such as gemma-3-1b)',
    );
  }
  const { text_config: text, ...top } = json;
  return { ...top, ...(isRecord(text) ? text : {}), architectures: ['Gemma3ForCausalLM'], model_type: 'gemma3_text' };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Gemma's RoPE bases: rope_theta (Gemma 2 default 1e4, Gemma 3 1e6) on every layer, except Gemma 3's sliding layers,
 * which rotate with rope_local_base_freq (default 1e4), unscaled. Gemma 3 4B and larger scale the full-attention
 * layers linearly (rope_scaling "linear", factor 8); nothing else is accepted.
 */
function gemmaRope(
  c: HfModelConfigJson,
  architecture: SupportedArchitecture,
  gemma: 2 | 3,
  fail: (m: string) => never,
): { ropeTheta: number; ropeLocalTheta: number | null; ropeLinearFactor: number | null } {
  const global = c.rope_parameters?.full_attention ?? c.rope_parameters ?? c.rope_scaling ?? null;
  const local = c.rope_parameters?.sliding_attention ?? null;
  const typeOf = (rope: typeof global) => (rope === null ? 'default' : (rope.rope_type ?? rope.type ?? 'default'));
  const globalType = typeOf(global);
  if (typeOf(local) !== 'default' || (globalType !== 'default' && !(gemma === 3 && globalType === 'linear'))) {
    fail(
      `unsupported rope_scaling type "${typeOf(local) !== 'default' ? typeOf(local) : globalType}" for ${architecture}; ` +
        `Flywheel runs Gemma with plain RoPE${gemma === 3 ? ' and linear scaling of the full-attention layers' : ''}`,
    );
  }
  return {
    ropeTheta: c.rope_theta ?? global?.rope_theta ?? (gemma === 3 ? 1000000 : 10000),
    ropeLocalTheta: gemma === 3 ? (local?.rope_theta ?? c.rope_local_base_freq ?? 10000) : null,
    ropeLinearFactor: globalType === 'linear' ? linearFactor(global, fail) : null,
  };
}

/** rope_scaling "linear" (transformers' _compute_linear_scaling_rope_parameters): its factor, positions / factor. */
function linearFactor(rope: { factor?: number } | null, fail: (m: string) => never): number {
  if (rope?.factor === undefined) return fail('rope_scaling "linear" needs a factor');
  return rope.factor;
}

type SlidingAttention = Pick<ModelSpec, 'slidingWindow' | 'slidingLayers'>;

/**
 * The layers that attend within a sliding window, as transformers computes `layer_types`:
 * Gemma2Config every even layer, Gemma3TextConfig layers with (i + 1) % sliding_window_pattern != 0 (default 6), both
 * with sliding_window default 4096; Qwen2Config / Qwen3Config only with use_sliding_window, from max_window_layers
 * (default 28) on; MistralConfig every layer (sliding_window default 4096, null: none). An explicit `layer_types` wins
 * for Gemma and Qwen, must agree for Mistral, and may hold only "full_attention" elsewhere.
 */
function slidingAttentionOf(c: HfModelConfigJson, architecture: SupportedArchitecture, fail: (m: string) => never): SlidingAttention {
  const L = c.num_hidden_layers;
  const types = c.layer_types ?? null;
  const listed = types === null ? null : layerTypeFlags(types, L, fail);
  const shown = () => JSON.stringify([...new Set(types)]);
  let window: number | null = null;
  let flags: boolean[];
  const gemma = gemmaGeneration(architecture);
  if (gemma !== null) {
    window = c.sliding_window === undefined ? 4096 : c.sliding_window;
    const period = gemma === 2 ? 2 : (c.sliding_window_pattern ?? 6);
    flags = listed ?? Array.from({ length: L }, (_, i) => (i + 1) % period !== 0);
  } else if (/^Qwen[23]For/.test(architecture)) {
    window = c.use_sliding_window === true ? (c.sliding_window === undefined ? 4096 : c.sliding_window) : null;
    const from = c.max_window_layers ?? 28;
    flags = listed ?? Array.from({ length: L }, (_, i) => window !== null && i >= from);
  } else if (architecture === 'MistralForCausalLM') {
    window = c.sliding_window === undefined ? 4096 : c.sliding_window;
    flags = Array.from({ length: L }, () => window !== null);
    if (listed !== null && listed.some((s, i) => s !== flags[i])) {
      fail(`unsupported layer_types ${shown()} for MistralForCausalLM; its sliding_window (${window}) applies to every layer`);
    }
  } else {
    flags = Array.from({ length: L }, () => false);
    if (listed?.some((s) => s)) {
      fail(`unsupported layer_types ${shown()} for ${architecture}; Flywheel runs "full_attention" layers only there`);
    }
  }
  if (window === null && flags.some((s) => s)) {
    fail(`layer_types ${shown()} has "sliding_attention" layers but no sliding window is configured`);
  }
  return slidingAttentionFields(window, flags);
}

/** `layer_types` as per-layer sliding flags; only "full_attention" and "sliding_attention" are known. */
function layerTypeFlags(types: string[], L: number, fail: (m: string) => never): boolean[] {
  const unknown = types.filter((t) => t !== 'full_attention' && t !== 'sliding_attention');
  if (unknown.length > 0) {
    fail(`unsupported layer_types ${JSON.stringify([...new Set(types)])}; Flywheel runs "full_attention" and "sliding_attention" layers only`);
  }
  if (types.length < L) fail(`layer_types has ${types.length} entries for ${L} layers`);
  return types.slice(0, L).map((t) => t === 'sliding_attention');
}

/**
 * The spec's sliding-window fields from a window (null: none) and per-layer flags, in one normal form for every
 * source: nothing when no layer slides, no slidingLayers when every layer does.
 */
export function slidingAttentionFields(window: number | null, sliding: readonly boolean[]): SlidingAttention {
  const layers = sliding.flatMap((s, i) => (s ? [i] : []));
  if (window === null || layers.length === 0) return {};
  return layers.length === sliding.length ? { slidingWindow: window } : { slidingWindow: window, slidingLayers: layers };
}

/** What a Gemma 2 / Gemma 3 spec adds to the Llama one, from a config.json or GGUF metadata alike. */
export interface GemmaHyperparameters {
  generation: 2 | 3;
  hiddenSize: number;
  /** Scores are q·k times queryPreAttnScalar ** -0.5. */
  queryPreAttnScalar: number;
  attnSoftcap: number | null;
  finalSoftcap: number | null;
  /** Gemma 3's sliding layers' RoPE base; null: as every layer. */
  ropeLocalTheta: number | null;
  sliding: SlidingAttention;
}

/**
 * The Gemma fields of a ModelSpec: GeGLU, the embedding scale sqrt(hidden) rounded to f32 (transformers casts the
 * normalizer to the f32 hidden dtype; llama.cpp's sqrtf), the query scale, soft caps when set, sandwich norms, the
 * (1 + w) norm convention of HF checkpoints, Gemma 3's q/k norms and, where a layer slides, its local RoPE base.
 */
export function gemmaSpecFields(g: GemmaHyperparameters): Partial<ModelSpec> {
  return {
    hiddenAct: 'gelu_tanh',
    embedScale: Math.fround(Math.sqrt(g.hiddenSize)),
    attnScale: g.queryPreAttnScalar ** -0.5,
    ...(g.attnSoftcap !== null ? { attnSoftcap: g.attnSoftcap } : {}),
    ...(g.finalSoftcap !== null ? { finalSoftcap: g.finalSoftcap } : {}),
    sandwichNorms: true,
    normWeightOffset: true,
    ...(g.generation === 3 ? { qkNorm: true } : {}),
    ...g.sliding,
    ...(g.ropeLocalTheta !== null && g.sliding.slidingWindow !== undefined ? { ropeLocalTheta: g.ropeLocalTheta } : {}),
  };
}

function resolveArchitecture(c: HfModelConfigJson, fail: (m: string) => never): SupportedArchitecture {
  const listed = c.architectures ?? [];
  if (listed.length > 1) fail(`config.json lists several architectures (${listed.join(', ')}); expected one`);
  const name = listed[0] ?? (c.model_type !== undefined ? MODEL_TYPE_TO_ARCHITECTURE[c.model_type] : undefined);
  if (name === undefined) {
    return fail(
      `cannot tell the architecture: no "architectures" and model_type ${JSON.stringify(c.model_type)}; ` +
        `Flywheel serves Llama-family and Gemma models (${CAUSAL_LM_ARCHITECTURES})`,
    );
  }
  const supported = SUPPORTED_ARCHITECTURES.find((a) => a === name);
  if (supported === undefined) {
    return fail(`unsupported architecture ${name}; Flywheel serves Llama-family and Gemma models (${CAUSAL_LM_ARCHITECTURES})`);
  }
  return supported;
}

/**
 * SmolLM3Config: `no_rope_layers[i]` is 1 where layer i uses RoPE and 0 where it is a NoPE layer (a list at least
 * num_hidden_layers long); absent, every no_rope_layer_interval-th layer (default 4: layers 3, 7, ...) skips RoPE.
 * Returns the NoPE layers, ascending.
 */
function smolLM3NoRopeLayers(c: HfModelConfigJson, fail: (m: string) => never): number[] {
  const L = c.num_hidden_layers;
  const interval = c.no_rope_layer_interval ?? 4;
  const flags = c.no_rope_layers ?? Array.from({ length: L }, (_, i) => ((i + 1) % interval !== 0 ? 1 : 0));
  if (flags.length < L) fail(`no_rope_layers has ${flags.length} entries for ${L} layers`);
  if (flags.some((f) => f !== 0 && f !== 1)) fail('no_rope_layers must hold 0 (NoPE layer) or 1 (RoPE layer) per layer');
  return flags.slice(0, L).flatMap((f, i) => (f === 0 ? [i] : []));
}

/**
 * Phi-3 "longrope" as transformers' `_compute_longrope_parameters`: short/long divisors of rotaryDim / 2 frequencies,
 * original_max_position_embeddings from the config (or the rope parameters), and, unless given, the attention factor
 * sqrt(1 + ln(s) / ln(original)) with s = max_position_embeddings / original (1 when s <= 1), rounded to f32 as the
 * engine and a GGUF file hold it.
 */
function parseLongRope(
  rope: z.infer<typeof ropeParametersSchema>,
  c: HfModelConfigJson,
  rotaryDim: number,
  maxPositionEmbeddings: number,
  fail: (m: string) => never,
): LongRopeScaling {
  const { short_factor: shortFactor, long_factor: longFactor } = rope;
  if (shortFactor === undefined || longFactor === undefined) fail('rope_scaling "longrope" needs short_factor and long_factor');
  for (const [name, f] of [['short_factor', shortFactor], ['long_factor', longFactor]] as const) {
    if (f!.length !== rotaryDim / 2) fail(`rope_scaling "longrope": ${name} has ${f!.length} factors, expected rotated dims / 2 = ${rotaryDim / 2}`);
  }
  const original = c.original_max_position_embeddings ?? rope.original_max_position_embeddings;
  if (original === undefined) return fail('rope_scaling "longrope" needs original_max_position_embeddings');
  const scale = maxPositionEmbeddings / original;
  const attentionFactor = rope.attention_factor ?? (scale <= 1 ? 1 : Math.sqrt(1 + Math.log(scale) / Math.log(original)));
  return {
    shortFactor: [...shortFactor!],
    longFactor: [...longFactor!],
    originalMaxPositionEmbeddings: original,
    attentionFactor: Math.fround(attentionFactor),
  };
}

function parseRopeScaling(
  rope: z.infer<typeof ropeParametersSchema> | null,
  fail: (m: string) => never,
): Llama3RopeScaling | null {
  if (rope === null) return null;
  const type = rope.rope_type ?? rope.type ?? 'default';
  if (type === 'default') return null;
  if (type !== 'llama3') {
    return fail(`unsupported rope_scaling type "${type}"; Flywheel supports plain RoPE, "linear" and "llama3" scaling`);
  }
  const { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings } = rope;
  if (
    factor === undefined ||
    low_freq_factor === undefined ||
    high_freq_factor === undefined ||
    original_max_position_embeddings === undefined
  ) {
    return fail(
      'rope_scaling "llama3" needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings',
    );
  }
  if (high_freq_factor <= low_freq_factor) {
    fail(`rope_scaling "llama3": high_freq_factor ${high_freq_factor} must exceed low_freq_factor ${low_freq_factor}`);
  }
  return {
    factor,
    lowFreqFactor: low_freq_factor,
    highFreqFactor: high_freq_factor,
    originalMaxPositionEmbeddings: original_max_position_embeddings,
  };
}

function idList(v: number | number[] | null | undefined): number[] {
  if (v == null) return [];
  return Array.isArray(v) ? [...v] : [v];
}

function firstId(v: number | number[] | null | undefined): number | null {
  return idList(v)[0] ?? null;
}
