/**
 * For specs of LoRA runs: which tensors of a written (merged) checkpoint differ, bit for bit, from the base it was
 * trained from. A LoRA run must change exactly its targeted projections (and a new score head, which the base lacks).
 * Test support only; nothing in the trainers calls it.
 */
import type { WeightMap } from '@flywheel/kernels';

/** Names of the base's tensors whose bits differ in `out` (tensors `out` lacks are skipped), sorted. */
export function changedTensors(base: WeightMap, out: WeightMap): string[] {
  const changed: string[] = [];
  for (const [name, w] of base) {
    const v = out.get(name);
    if (v === undefined) continue;
    const same = Buffer.from(w.buffer, w.byteOffset, w.byteLength).equals(Buffer.from(v.buffer, v.byteOffset, v.byteLength));
    if (!same) changed.push(name);
  }
  return changed.sort();
}

/** The base's tensor names that are projections LoRA targets (`q_proj`, ...), sorted: what changedTensors should give. */
export function targetedTensors(base: WeightMap, targets: readonly string[]): string[] {
  return [...base.keys()].filter((n) => targets.some((t) => n.endsWith(`.${t}.weight`))).sort();
}
