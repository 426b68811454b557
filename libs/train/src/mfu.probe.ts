/**
 * The peak a run's model-FLOPs utilisation (MFU) is measured against: the f32 FLOP/s of the engine's matmul on this
 * machine, probed once per run. Not the MFU itself (the trainers compute it from their own token rates).
 */
import { ops } from '@flywheel/kernels';

/** f32 FLOP/s of the engine's matmul on all cores (best of 5 runs of a 256x1024x1024 product). */
export function measurePeakFlops(): number {
  const T = 256, n = 1024, o = 1024;
  const x = new Float32Array(T * n).fill(0.5);
  const w = new Float32Array(o * n).fill(0.25);
  ops.matmul(x, w, { T, in: n, out: o });
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const t0 = process.hrtime.bigint();
    ops.matmul(x, w, { T, in: n, out: o });
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return (2 * T * n * o) / best;
}
