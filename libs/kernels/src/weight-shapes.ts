/**
 * Every tensor a Llama-family model of a ModelSpec has, by Hugging Face name, with its HF shape (row-major,
 * Linear = (out, in); norms and biases 1-D): the checkpoint layout (causal LM, or sequence classifier with a score
 * head), what a trainable model holds, and the LoRA adapters' PEFT names and shapes. One list for the engine, the
 * trainer, the checkpoint reader and writer. No checks and no addon calls here.
 */
import type { ModelSpec } from './kernels.types';

/** A sequence classifier's head (HF `score`): the reward model's, the PPO critic's value head. */
export const SCORE_HEAD_WEIGHT = 'score.weight';

/**
 * The checkpoint layout: every tensor by HF name with its HF shape. scoreLabels (LlamaForSequenceClassification):
 * a `score.weight` (scoreLabels, hidden) instead of lm_head; null (default): a causal LM, lm_head unless tied.
 */
export function expectedWeightShapes(spec: ModelSpec, scoreLabels: number | null = null): Map<string, number[]> {
  const C = spec.hiddenSize;
  const qd = spec.numHeads * spec.headDim;
  const kvd = spec.numKvHeads * spec.headDim;
  const I = spec.intermediateSize;
  const shapes = new Map<string, number[]>();
  shapes.set('model.embed_tokens.weight', [spec.vocabSize, C]);
  for (let l = 0; l < spec.numLayers; l++) {
    const p = `model.layers.${l}.`;
    shapes.set(`${p}input_layernorm.weight`, [C]);
    shapes.set(`${p}self_attn.q_proj.weight`, [qd, C]);
    shapes.set(`${p}self_attn.k_proj.weight`, [kvd, C]);
    shapes.set(`${p}self_attn.v_proj.weight`, [kvd, C]);
    if (spec.attentionBias) {
      shapes.set(`${p}self_attn.q_proj.bias`, [qd]);
      shapes.set(`${p}self_attn.k_proj.bias`, [kvd]);
      shapes.set(`${p}self_attn.v_proj.bias`, [kvd]);
    }
    if (spec.qkNorm) {
      shapes.set(`${p}self_attn.q_norm.weight`, [spec.headDim]);
      shapes.set(`${p}self_attn.k_norm.weight`, [spec.headDim]);
    }
    shapes.set(`${p}self_attn.o_proj.weight`, [C, qd]);
    shapes.set(`${p}post_attention_layernorm.weight`, [C]);
    if (spec.sandwichNorms) shapes.set(`${p}pre_feedforward_layernorm.weight`, [C]);
    shapes.set(`${p}mlp.gate_proj.weight`, [I, C]);
    shapes.set(`${p}mlp.up_proj.weight`, [I, C]);
    shapes.set(`${p}mlp.down_proj.weight`, [C, I]);
    if (spec.sandwichNorms) shapes.set(`${p}post_feedforward_layernorm.weight`, [C]);
  }
  shapes.set('model.norm.weight', [C]);
  if (scoreLabels !== null) shapes.set(SCORE_HEAD_WEIGHT, [scoreLabels, C]);
  else if (!spec.tieWordEmbeddings) shapes.set('lm_head.weight', [spec.vocabSize, C]);
  return shapes;
}

/**
 * Every tensor a trainable model holds, by HF name with its HF shape: the causal-LM layout plus, with numLabels > 0,
 * a scalar head `score.weight` (numLabels, hidden) beside the LM head.
 */
export function trainableWeightShapes(spec: ModelSpec, numLabels = 0): Map<string, number[]> {
  const shapes = expectedWeightShapes(spec);
  if (numLabels > 0) shapes.set(SCORE_HEAD_WEIGHT, [numLabels, spec.hiddenSize]);
  return shapes;
}

/**
 * The window every layer attends within (a sliding-window model such as Mistral's), or null when some layer reads the
 * whole context (Gemma's global layers, or no window at all): only then may a sequence's earlier KV blocks be released.
 */
export function everyLayerWindow(spec: ModelSpec): number | null {
  if (spec.slidingWindow === undefined) return null;
  return spec.slidingLayers === undefined || spec.slidingLayers.length === spec.numLayers ? spec.slidingWindow : null;
}

/** The projections a LoRA adapter may target (HF module names of LlamaAttention / LlamaMLP). */
export const LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

/** PEFT's name of layer `layer`'s adapter matrix on `target` (as in adapter_model.safetensors). */
export function loraAdapterName(layer: number, target: LoraTarget, which: 'A' | 'B'): string {
  const block = target === 'gate_proj' || target === 'up_proj' || target === 'down_proj' ? 'mlp' : 'self_attn';
  return `base_model.model.model.layers.${layer}.${block}.${target}.lora_${which}.weight`;
}

/** Every adapter tensor of a LoRA model, by PEFT name, with its [rows, cols]: A [rank, in], B [out, rank]. */
export function loraAdapterShapes(spec: ModelSpec, lora: { rank: number; targets: readonly LoraTarget[] }): Map<string, [number, number]> {
  const C = spec.hiddenSize, I = spec.intermediateSize;
  const qd = spec.numHeads * spec.headDim, kvd = spec.numKvHeads * spec.headDim;
  const dims: Record<LoraTarget, [number, number]> = {
    q_proj: [C, qd],
    k_proj: [C, kvd],
    v_proj: [C, kvd],
    o_proj: [qd, C],
    gate_proj: [C, I],
    up_proj: [C, I],
    down_proj: [I, C],
  };
  const shapes = new Map<string, [number, number]>();
  for (let l = 0; l < spec.numLayers; l++) {
    for (const t of LORA_TARGETS) {
      if (!lora.targets.includes(t)) continue;
      const [inDim, outDim] = dims[t];
      shapes.set(loraAdapterName(l, t, 'A'), [lora.rank, inDim]);
      shapes.set(loraAdapterName(l, t, 'B'), [outDim, lora.rank]);
    }
  }
  return shapes;
}
