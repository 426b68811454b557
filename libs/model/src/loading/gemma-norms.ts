/**
 * Gemma's RMSNorm weights: Hugging Face checkpoints store w where the model scales by (1 + w) (Gemma2RMSNorm,
 * Gemma3RMSNorm, q/k norms included); the engine, the trainer and GGUF files (convert_hf_to_gguf.py adds the 1) hold
 * 1 + w. The safetensors loader adds 1 for a spec with normWeightOffset and the writer subtracts it, in f32 as
 * transformers computes 1.0 + weight.float(). Which specs carry the offset is model-config.schema's; no files here.
 */
import type { ModelSpec } from '@flywheel/kernels';

/** The RMSNorm weights of a checkpoint: input, post-attention, pre/post-feedforward layernorms, q/k norms, final norm. */
export function isNormWeight(name: string): boolean {
  return /(layernorm|_norm)\.weight$/.test(name) || name === 'model.norm.weight';
}

/** f32(x + delta) elementwise, into a new array (the source may be a view of a file buffer). */
function shifted(data: Float32Array, delta: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i] + delta;
  return out;
}

/** The tensors as the engine takes them: every norm weight w of an HF checkpoint as 1 + w when the spec says so. */
export function addNormWeightOffset<S extends { data: Float32Array }>(tensors: ReadonlyMap<string, S>, spec: ModelSpec): ReadonlyMap<string, S> {
  if (!spec.normWeightOffset) return tensors;
  const out = new Map(tensors);
  for (const [name, t] of tensors) if (isNormWeight(name)) out.set(name, { ...t, data: shifted(t.data, 1) });
  return out;
}

/** The inverse for a writer: every norm weight 1 + w back to the checkpoint's w when the spec says so. */
export function removeNormWeightOffset<T extends { name: string; data: Float32Array }>(tensors: readonly T[], spec: ModelSpec): T[] {
  if (!spec.normWeightOffset) return [...tensors];
  return tensors.map((t) => (isNormWeight(t.name) ? { ...t, data: shifted(t.data, -1) } : t));
}
