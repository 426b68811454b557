/**
 * Phi-3's fused projections and the engine's separate ones: `self_attn.qkv_proj.weight` (q rows, then k, then v) and
 * `mlp.gate_up_proj.weight` (gate rows, then up rows) split into q/k/v_proj and gate/up_proj at load (row ranges,
 * no copies; GGML block rows for quantized GGUF tensors), and fused back for a Phi-3 checkpoint on write. It checks
 * only the row counts the spec implies; names and the other shapes are weight-map.validator's.
 */
import { QUANT_BLOCKS } from '@flywheel/kernels';
import type { ModelSpec, QuantTensor } from '@flywheel/kernels';
import { ModelLoadError } from './model-load.error';

/** A tensor with its HF shape, as the loaders carry it (extra fields, such as a source dtype, are kept). */
interface Shaped<T> {
  shape: number[];
  data: T;
}

/** Each fused tensor's layer-local name and its parts', in storage order: the one list the loaders and writers share. */
export const FUSED_PROJECTIONS: readonly (readonly [fused: string, parts: readonly string[]])[] = [
  ['self_attn.qkv_proj.weight', ['self_attn.q_proj.weight', 'self_attn.k_proj.weight', 'self_attn.v_proj.weight']],
  ['mlp.gate_up_proj.weight', ['mlp.gate_proj.weight', 'mlp.up_proj.weight']],
];

/** The parts of each fused tensor of layer prefix `p`, with their rows, in storage order. */
function fusedParts(spec: ModelSpec, p: string): [string, [string, number][]][] {
  const rows = (part: string): number =>
    part.startsWith('mlp.') ? spec.intermediateSize : (part.startsWith('self_attn.q_') ? spec.numHeads : spec.numKvHeads) * spec.headDim;
  return FUSED_PROJECTIONS.map(([fused, parts]) => [`${p}${fused}`, parts.map((part): [string, number] => [`${p}${part}`, rows(part)])]);
}

/** Rows [r0, r1) of a row-major (rows, cols) tensor, as a view. */
function rowRange<T extends Float32Array | QuantTensor>(data: T, r0: number, r1: number, cols: number): T {
  if (data instanceof Float32Array) return data.subarray(r0 * cols, r1 * cols) as T;
  const q = data as QuantTensor;
  const rowBytes = (cols / QUANT_BLOCKS[q.dtype].elems) * QUANT_BLOCKS[q.dtype].bytes;
  return { dtype: q.dtype, blocks: q.blocks.subarray(r0 * rowBytes, r1 * rowBytes) } as T;
}

/**
 * Replaces every fused tensor in `tensors` by its parts (same other fields, data as row views). Tensors that are not
 * fused pass through, so a checkpoint that already has q/k/v_proj loads unchanged.
 */
export function splitFusedProjections<T extends Float32Array | QuantTensor, S extends Shaped<T>>(
  tensors: ReadonlyMap<string, S>,
  spec: ModelSpec,
  file: string,
): Map<string, S> {
  const out = new Map(tensors);
  for (let l = 0; l < spec.numLayers; l++) {
    for (const [fused, parts] of fusedParts(spec, `model.layers.${l}.`)) {
      const t = out.get(fused);
      if (t === undefined) continue;
      const rows = parts.reduce((n, [, r]) => n + r, 0);
      if (t.shape.length !== 2 || t.shape[0] !== rows || t.shape[1] !== spec.hiddenSize) {
        throw new ModelLoadError(
          `tensor "${fused}" has shape [${t.shape.join(', ')}], expected [${rows}, ${spec.hiddenSize}] (${parts.map(([n, r]) => `${r} rows of ${n.split('.').at(-2)}`).join(', ')})`,
          file,
        );
      }
      out.delete(fused);
      let r0 = 0;
      for (const [name, r] of parts) {
        if (out.has(name)) throw new ModelLoadError(`the checkpoint holds both "${fused}" and "${name}"`, file);
        out.set(name, { ...t, shape: [r, spec.hiddenSize], data: rowRange(t.data, r0, r0 + r, spec.hiddenSize) });
        r0 += r;
      }
    }
  }
  return out;
}

/** The inverse for a writer: each layer's q/k/v and gate/up (f32, HF shapes) concatenated into Phi-3's fused tensors. */
export function fuseProjections(tensors: readonly { name: string; shape: number[]; data: Float32Array }[], spec: ModelSpec) {
  const byName = new Map(tensors.map((t) => [t.name, t]));
  for (let l = 0; l < spec.numLayers; l++) {
    for (const [fused, parts] of fusedParts(spec, `model.layers.${l}.`)) {
      const datas = parts.map(([name]) => byName.get(name)?.data);
      if (datas.some((d) => d === undefined)) throw new Error(`fuseProjections: missing a part of ${fused}`);
      const data = new Float32Array(datas.reduce((n, d) => n + d!.length, 0));
      let at = 0;
      for (const d of datas) {
        data.set(d!, at);
        at += d!.length;
      }
      for (const [name] of parts) byName.delete(name);
      byName.set(fused, { name: fused, shape: [parts.reduce((n, [, r]) => n + r, 0), spec.hiddenSize], data });
    }
  }
  return [...byName.values()];
}
