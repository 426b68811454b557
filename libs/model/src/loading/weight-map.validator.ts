/**
 * The check that turns loaded tensors into a WeightMap against the names and shapes a Llama-family checkpoint of a
 * ModelSpec must have (expectedWeightShapes, @flywheel/kernels): missing, misshapen or unknown tensors are ModelLoadErrors.
 * Both the safetensors and the GGUF paths end here, so the engine always sees the same HF names.
 * It reads no files and converts no dtypes.
 */
import { expectedWeightShapes, type ModelSpec } from '@flywheel/kernels';
import { ModelLoadError } from './model-load.error';

/** A tensor's HF shape and its data: f32 (what every path yields) or, from the GGUF reader, Q8_0 blocks. */
export interface ShapedTensor<T = Float32Array> {
  shape: number[];
  data: T;
}

export interface WeightLayout {
  spec: ModelSpec;
  /** Rows of `score.weight` for LlamaForSequenceClassification; null for causal LMs (which have lm_head). */
  scoreLabels: number | null;
}

/** Tensors some exporters write that carry nothing the engine needs. */
function isIgnorable(name: string, layout: WeightLayout): boolean {
  if (name.endsWith('.rotary_emb.inv_freq')) return true;
  // transformers ignores a stored lm_head when the config ties it to the embedding.
  return name === 'lm_head.weight' && (layout.spec.tieWordEmbeddings || layout.scoreLabels !== null);
}

/** Checks names and shapes against the spec and returns the WeightMap (same arrays, no copies). */
export function buildWeightMap<T>(tensors: ReadonlyMap<string, ShapedTensor<T>>, layout: WeightLayout, file: string): Map<string, T> {
  const expected = expectedWeightShapes(layout.spec, layout.scoreLabels);
  const missing = [...expected.keys()].filter((n) => !tensors.has(n));
  if (missing.length > 0) {
    const shown = missing.slice(0, 5).join(', ') + (missing.length > 5 ? `, ... (${missing.length} in all)` : '');
    throw new ModelLoadError(`missing tensors for the configured model: ${shown}`, file);
  }
  const out = new Map<string, T>();
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
