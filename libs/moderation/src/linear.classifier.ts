/**
 * One-vs-rest logistic regression over hashed n-gram features: training (AdaGrad, seeded), Platt
 * calibration, int8 quantisation, per-head decision thresholds, and the artifact format (model.json +
 * weights.bin, feature-major int8 `[buckets][heads]` with one dequantisation scale per head). Pure:
 * callers do the file I/O; choosing the thresholds is classifier.training.ts's job.
 */
import { z } from 'zod';
import { mulberry32, shuffleInPlace } from '@flywheel/kernels';
import type { SparseVector } from './ngram.features';

export const CLASSIFIER_FORMAT = 'flywheel-hashed-ngram-lr/1';

export const classifierMetaSchema = z.object({
  format: z.literal(CLASSIFIER_FORMAT),
  buckets: z.number().int().positive(),
  heads: z.array(z.string()).min(1),
  bias: z.array(z.number()),
  scale: z.array(z.number()),
  /** Platt parameters per head: p = sigmoid(a * logit + b). */
  platt: z.array(z.object({ a: z.number(), b: z.number() })),
  /**
   * Per-head decision threshold on the calibrated score, chosen on out-of-fold scores. Optional so older
   * artifacts load: an absent head (or an absent record) decides at 0.5.
   */
  thresholds: z.record(z.string(), z.number().gt(0).lt(1)).optional(),
  seed: z.number().int(),
  trainedOn: z.number().int(),
  /** Free-form training record (hyperparameters, data hash, held-out metrics). */
  training: z.record(z.string(), z.unknown()).default({}),
});
export type ClassifierMeta = z.infer<typeof classifierMetaSchema>;

export const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

/** Where a head decides when its artifact names no threshold. */
export const DEFAULT_THRESHOLD = 0.5;

/**
 * A calibrated score `p` moved onto the policy's scale, where the head's threshold `t` lands on 0.5:
 * the odds divided by t's odds, i.e. sigmoid(logit p − logit t). Monotone, 0 and 1 stay put, and with
 * t = 0.5 it is the identity, so an artifact without thresholds behaves exactly as before.
 */
export function relativeToThreshold(p: number, t: number): number {
  const num = p * (1 - t);
  const den = num + (1 - p) * t;
  return den > 0 ? num / den : 0;
}

export class LinearClassifier {
  /** Decision threshold of each head on its calibrated score, in `heads` order. */
  readonly thresholds: Float64Array;

  constructor(
    readonly meta: ClassifierMeta,
    /** Feature-major int8 weights: weight of head k for bucket j at `j * heads + k`. */
    private readonly weights: Int8Array,
  ) {
    const k = meta.heads.length;
    if (weights.length !== meta.buckets * k) throw new Error(`weights hold ${weights.length} values, expected ${meta.buckets * k}`);
    if (meta.bias.length !== k || meta.scale.length !== k || meta.platt.length !== k) throw new Error('model.json: per-head arrays differ in length');
    const unknown = Object.keys(meta.thresholds ?? {}).filter((h) => !meta.heads.includes(h));
    if (unknown.length > 0) throw new Error(`model.json: thresholds for unknown heads ${unknown.join(', ')}`);
    this.thresholds = Float64Array.from(meta.heads, (h) => meta.thresholds?.[h] ?? DEFAULT_THRESHOLD);
  }

  get heads(): readonly string[] {
    return this.meta.heads;
  }

  /** Raw (uncalibrated) logits per head. */
  logits(x: SparseVector): Float64Array {
    const k = this.meta.heads.length;
    const acc = new Float64Array(k);
    for (let i = 0; i < x.index.length; i++) {
      const base = x.index[i] * k;
      const v = x.value[i];
      for (let h = 0; h < k; h++) acc[h] += this.weights[base + h] * v;
    }
    for (let h = 0; h < k; h++) acc[h] = acc[h] * this.meta.scale[h] + this.meta.bias[h];
    return acc;
  }

  /** Calibrated probabilities per head, in `heads` order. */
  predict(x: SparseVector): Float64Array {
    const z = this.logits(x);
    for (let h = 0; h < z.length; h++) z[h] = sigmoid(this.meta.platt[h].a * z[h] + this.meta.platt[h].b);
    return z;
  }
}

export interface TrainProgress {
  /** Epochs done of `steps` (trainClassifier counts its calibration folds' epochs and the final fit's). */
  step: number;
  steps: number;
  /** Mean log loss of the epoch just done, over its examples and heads, before the positive weighting. */
  loss: number;
}

export interface TrainOptions {
  buckets: number;
  epochs: number;
  learningRate: number;
  l2: number;
  seed: number;
  /** Called after every epoch (a trainer job's progress); does not change the result. */
  onEpoch?: (p: TrainProgress) => void;
}

export interface TrainedWeights {
  /** Feature-major float weights `[buckets][heads]`. */
  weights: Float32Array;
  bias: Float32Array;
}

/**
 * AdaGrad on the log loss, one head per label, positives up-weighted by sqrt(neg/pos) because each
 * category is rare in the seed set. L2 is applied to the weights an example touches (lazy), which
 * keeps an epoch O(nnz * heads). A generator that pauses after every epoch, so a caller can let its event
 * loop run (runYielding) or not (runToEnd).
 */
export function* trainOneVsRestEpochs(xs: SparseVector[], ys: Uint8Array[], heads: number, opts: TrainOptions): Generator<void, TrainedWeights> {
  const { buckets } = opts;
  const weights = new Float32Array(buckets * heads);
  const g2 = new Float32Array(buckets * heads).fill(1e-8);
  const bias = new Float32Array(heads);
  const bg2 = new Float32Array(heads).fill(1e-8);
  const posWeight = new Float32Array(heads);
  for (let h = 0; h < heads; h++) {
    const pos = ys.reduce((n, y) => n + y[h], 0);
    posWeight[h] = pos > 0 ? Math.sqrt(Math.max(1, (ys.length - pos) / pos)) : 1;
  }
  // mulberry32: a seed reproduces the shuffle order and therefore the model.
  const rand = mulberry32(opts.seed);
  const order = xs.map((_, i) => i);
  const z = new Float64Array(heads);
  for (let epoch = 0; epoch < opts.epochs; epoch++) {
    shuffleInPlace(order, rand);
    let loss = 0;
    for (const n of order) {
      const x = xs[n];
      const y = ys[n];
      z.set(bias);
      for (let i = 0; i < x.index.length; i++) {
        const base = x.index[i] * heads;
        for (let h = 0; h < heads; h++) z[h] += weights[base + h] * x.value[i];
      }
      for (let h = 0; h < heads; h++) {
        const p = sigmoid(z[h]);
        loss -= Math.log(Math.max(1e-12, y[h] ? p : 1 - p));
        const g = (p - y[h]) * (y[h] ? posWeight[h] : 1);
        bg2[h] += g * g;
        bias[h] -= (opts.learningRate * g) / Math.sqrt(bg2[h]);
        for (let i = 0; i < x.index.length; i++) {
          const w = x.index[i] * heads + h;
          const gw = g * x.value[i] + opts.l2 * weights[w];
          g2[w] += gw * gw;
          weights[w] -= (opts.learningRate * gw) / Math.sqrt(g2[w]);
        }
      }
    }
    opts.onEpoch?.({ step: epoch + 1, steps: opts.epochs, loss: loss / Math.max(1, xs.length * heads) });
    yield;
  }
  return { weights, bias };
}

/** Runs a paused computation to its end on this turn. */
export function runToEnd<T>(steps: Generator<void, T>): T {
  for (;;) {
    const next = steps.next();
    if (next.done) return next.value;
  }
}

/** Runs a paused computation to its end, letting the event loop run at every pause (timers, sockets, replies). */
export async function runYielding<T>(steps: Generator<void, T>): Promise<T> {
  for (;;) {
    const next = steps.next();
    if (next.done) return next.value;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** Symmetric int8 quantisation per head; returns the int8 tensor and each head's scale. */
export function quantize(weights: Float32Array, heads: number): { q: Int8Array; scale: number[] } {
  const maxAbs = new Array<number>(heads).fill(0);
  for (let i = 0; i < weights.length; i++) maxAbs[i % heads] = Math.max(maxAbs[i % heads], Math.abs(weights[i]));
  const scale = maxAbs.map((m) => (m > 0 ? m / 127 : 1));
  const q = new Int8Array(weights.length);
  for (let i = 0; i < weights.length; i++) q[i] = Math.round(weights[i] / scale[i % heads]);
  return { q, scale };
}

/**
 * Platt scaling fitted by Newton's method on (logit, label) pairs, with Platt's smoothed targets
 * ((N+ + 1)/(N+ + 2) and 1/(N- + 2)) so a head with few positives does not get an infinite slope.
 */
export function fitPlatt(logits: ArrayLike<number>, labels: ArrayLike<number>): { a: number; b: number } {
  let pos = 0;
  for (let i = 0; i < labels.length; i++) pos += labels[i];
  const neg = labels.length - pos;
  const hi = (pos + 1) / (pos + 2);
  const lo = 1 / (neg + 2);
  let a = 1;
  let b = 0;
  for (let iter = 0; iter < 100; iter++) {
    let ga = 0, gb = 0, haa = 1e-6, hab = 0, hbb = 1e-6;
    for (let i = 0; i < logits.length; i++) {
      const t = labels[i] ? hi : lo;
      const p = sigmoid(a * logits[i] + b);
      const d = p - t;
      const w = p * (1 - p);
      ga += d * logits[i];
      gb += d;
      haa += w * logits[i] * logits[i];
      hab += w * logits[i];
      hbb += w;
    }
    const det = haa * hbb - hab * hab;
    if (Math.abs(det) < 1e-12) break;
    const da = (hbb * ga - hab * gb) / det;
    const db = (haa * gb - hab * ga) / det;
    a -= da;
    b -= db;
    if (Math.abs(da) < 1e-9 && Math.abs(db) < 1e-9) break;
  }
  // A non-positive slope would invert the ranking the model learnt; fall back to the identity.
  return a > 0 && Number.isFinite(a) && Number.isFinite(b) ? { a, b } : { a: 1, b: 0 };
}
