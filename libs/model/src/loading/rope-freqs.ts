/**
 * Llama 3.x GGUF files carry their RoPE scaling as `rope_freqs.weight`: one divisor per frequency (head_dim / 2),
 * computed by llama.cpp's converter from config.json's llama3 `rope_scaling`, whose parameters the file does not
 * keep. This recovers parameters that give exactly those divisors (several do when few frequencies fall in the
 * smoothed band: they give the same model), so the engine's llama3 RoPE serves the file. Pure; not the reader.
 */
import type { Llama3RopeScaling } from '@flywheel/kernels';

/** The divisor of each frequency under `scaling` (llama.cpp's `rope_factors`; 1 = unchanged). */
export function llama3RopeFactors(headDim: number, theta: number, scaling: Llama3RopeScaling): number[] {
  const out: number[] = [];
  const old = scaling.originalMaxPositionEmbeddings;
  const lowWavelen = old / scaling.lowFreqFactor;
  const highWavelen = old / scaling.highFreqFactor;
  for (let j = 0; j < headDim / 2; j++) {
    const freq = Math.fround(1 / Math.pow(theta, Math.fround((2 * j) / headDim)));
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out.push(1);
    else if (wavelen > lowWavelen) out.push(scaling.factor);
    else {
      const smooth = (old / wavelen - scaling.lowFreqFactor) / (scaling.highFreqFactor - scaling.lowFreqFactor);
      out.push(1 / ((1 - smooth) / scaling.factor + smooth));
    }
  }
  return out;
}

const TOLERANCE = 1e-4;

/**
 * Llama-3 scaling parameters reproducing `factors` (relative error < 1e-4 on every divisor), null when every
 * divisor is 1 (no scaling); throws when no llama3 scaling produces them.
 */
export function llama3ScalingFromRopeFactors(factors: ArrayLike<number>, headDim: number, theta: number): Llama3RopeScaling | null {
  const r = Array.from(factors);
  if (r.length !== headDim / 2) throw new Error(`rope_freqs has ${r.length} values, expected head_dim / 2 = ${headDim / 2}`);
  if (r.some((x) => !(x >= 1 - TOLERANCE) || !Number.isFinite(x))) throw new Error('rope_freqs values must be finite divisors >= 1');
  if (r.every((x) => Math.abs(x - 1) < TOLERANCE)) return null;
  const factor = Math.max(...r);
  const wavelens = r.map((_, j) => (2 * Math.PI) / Math.fround(1 / Math.pow(theta, Math.fround((2 * j) / headDim))));
  const smoothed = r.flatMap((x, j) => (x > 1 + TOLERANCE && x < factor * (1 - TOLERANCE) ? [j] : []));
  // smooth_j = (1 / r_j - 1 / factor) / (1 - 1 / factor) = old / (high - low) / wavelen_j - low / (high - low)
  const smoothOf = (j: number) => (1 / r[j]! - 1 / factor) / (1 - 1 / factor);
  let scaling: Llama3RopeScaling;
  if (smoothed.length >= 2) {
    // Least squares of smooth = a * (1 / wavelen) - c; with low = 1: high = 1 + 1 / c, old = a / c.
    const xs = smoothed.map((j) => 1 / wavelens[j]!);
    const ys = smoothed.map(smoothOf);
    const n = xs.length;
    const mx = xs.reduce((s, x) => s + x, 0) / n;
    const my = ys.reduce((s, y) => s + y, 0) / n;
    const a = xs.reduce((s, x, i) => s + (x - mx) * (ys[i]! - my), 0) / xs.reduce((s, x) => s + (x - mx) ** 2, 0);
    const c = a * mx - my;
    // The engine takes a whole original context: round it, and give the band the same slope and offset.
    const old = Math.round(a / c);
    const width = old / a;
    scaling = { factor, lowFreqFactor: c * width, highFreqFactor: c * width + width, originalMaxPositionEmbeddings: old };
  } else if (smoothed.length === 1) {
    // One smoothed frequency: Llama 3's own low/high factors (1, 4), and the context that gives its divisor.
    const j = smoothed[0]!;
    const old = Math.round(wavelens[j]! * (smoothOf(j) * 3 + 1));
    scaling = { factor, lowFreqFactor: 1, highFreqFactor: 1 + (old / wavelens[j]! - 1) / smoothOf(j), originalMaxPositionEmbeddings: old };
  } else {
    // No smoothed band: any context between the last kept and the first divided wavelength.
    const keptMax = Math.max(...r.flatMap((x, j) => (x < 1 + TOLERANCE ? [wavelens[j]!] : [0])));
    const dividedMin = Math.min(...r.flatMap((x, j) => (x > factor * (1 - TOLERANCE) ? [wavelens[j]!] : [Infinity])));
    scaling = { factor, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: Math.round(Math.sqrt(4 * keptMax * dividedMin)) };
  }
  const again = llama3RopeFactors(headDim, theta, scaling);
  const worst = Math.max(...again.map((x, j) => Math.abs(x - r[j]!) / r[j]!));
  if (!(worst < TOLERANCE)) throw new Error(`rope_freqs is not a llama3 RoPE scaling (best fit is off by ${worst.toExponential(2)})`);
  return scaling;
}
