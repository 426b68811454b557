/**
 * The tensor names and shapes a Llama-family checkpoint must have for a given ModelSpec, and the check that
 * turns loaded tensors into a WeightMap (missing, misshapen or unknown tensors are ModelLoadErrors).
 * Both the safetensors and the GGUF paths end here, so the engine always sees the same HF names.
 * It reads no files and converts no dtypes.
 */
import type { ModelSpec, WeightMap } from '@flywheel/kernels';
import { ModelLoadError } from './model-load.error';

export interface ShapedTensor {
  shape: number[];
  data: Float32Array;
}

export interface WeightLayout {
  spec: ModelSpec;
  /** Rows of `score.weight` for LlamaForSequenceClassification; null for causal LMs (which have lm_head). */
  scoreLabels: number | null;
}

/** HF name → shape (row-major, Linear = (out, in)) of every tensor the engine needs. */
export function expectedWeightShapes({ spec, scoreLabels }: WeightLayout): Map<string, number[]> {
  const { hiddenSize: d, intermediateSize: ff, numHeads, numKvHeads, headDim, vocabSize } = spec;
  const shapes = new Map<string, number[]>();
  shapes.set('model.embed_tokens.weight', [vocabSize, d]);
  for (let i = 0; i < spec.numLayers; i++) {
    const p = `model.layers.${i}.`;
    shapes.set(`${p}input_layernorm.weight`, [d]);
    shapes.set(`${p}self_attn.q_proj.weight`, [numHeads * headDim, d]);
    shapes.set(`${p}self_attn.k_proj.weight`, [numKvHeads * headDim, d]);
    shapes.set(`${p}self_attn.v_proj.weight`, [numKvHeads * headDim, d]);
    if (spec.attentionBias) {
      shapes.set(`${p}self_attn.q_proj.bias`, [numHeads * headDim]);
      shapes.set(`${p}self_attn.k_proj.bias`, [numKvHeads * headDim]);
      shapes.set(`${p}self_attn.v_proj.bias`, [numKvHeads * headDim]);
    }
    shapes.set(`${p}self_attn.o_proj.weight`, [d, numHeads * headDim]);
    shapes.set(`${p}post_attention_layernorm.weight`, [d]);
    shapes.set(`${p}mlp.gate_proj.weight`, [ff, d]);
    shapes.set(`${p}mlp.up_proj.weight`, [ff, d]);
    shapes.set(`${p}mlp.down_proj.weight`, [d, ff]);
  }
  shapes.set('model.norm.weight', [d]);
  if (scoreLabels !== null) shapes.set('score.weight', [scoreLabels, d]);
  else if (!spec.tieWordEmbeddings) shapes.set('lm_head.weight', [vocabSize, d]);
  return shapes;
}

/** Tensors some exporters write that carry nothing the engine needs. */
function isIgnorable(name: string, layout: WeightLayout): boolean {
  if (name.endsWith('.rotary_emb.inv_freq')) return true;
  // transformers ignores a stored lm_head when the config ties it to the embedding.
  return name === 'lm_head.weight' && (layout.spec.tieWordEmbeddings || layout.scoreLabels !== null);
}

/** Checks names and shapes against the spec and returns the WeightMap (same Float32Arrays, no copies). */
export function buildWeightMap(tensors: ReadonlyMap<string, ShapedTensor>, layout: WeightLayout, file: string): WeightMap {
  const expected = expectedWeightShapes(layout);
  const missing = [...expected.keys()].filter((n) => !tensors.has(n));
  if (missing.length > 0) {
    const shown = missing.slice(0, 5).join(', ') + (missing.length > 5 ? `, ... (${missing.length} in all)` : '');
    throw new ModelLoadError(`missing tensors for the configured model: ${shown}`, file);
  }
  const out = new Map<string, Float32Array>();
  for (const [name, tensor] of tensors) {
    const shape = expected.get(name);
    if (shape === undefined) {
      if (isIgnorable(name, layout)) continue;
      throw new ModelLoadError(`unexpected tensor "${name}" for the configured model (an unsupported feature?)`, file);
    }
    if (shape.length !== tensor.shape.length || shape.some((s, i) => s !== tensor.shape[i])) {
      throw new ModelLoadError(
        `tensor "${name}" has shape [${tensor.shape.join(', ')}], expected [${shape.join(', ')}] from the config`,
        file,
      );
    }
    out.set(name, tensor.data);
  }
  return out;
}
