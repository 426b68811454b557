/**
 * Training and evaluation of the moderation classifier from the seed set: features, out-of-fold Platt
 * calibration, the final fit, and per-category precision/recall on a held-out split. Used by
 * scripts/moderation (which writes the artifact) and by the specs; no file I/O here.
 */
import type { AnyModerationCategory, ModerationDirection } from '@flywheel/contracts';
import {
  CLASSIFIER_FORMAT,
  fitPlatt,
  LinearClassifier,
  quantize,
  trainOneVsRest,
  type ClassifierMeta,
  type TrainOptions,
} from './linear.classifier';
import type { Moderator } from './moderator';
import { extractFeatures, type SparseVector } from './ngram.features';
import { CLASSIFIER_HEADS, type SeedExample } from './seed.dataset';
import { canonicalize } from './text.normalize';

export const DEFAULT_TRAIN_OPTIONS: TrainOptions = { buckets: 1 << 16, epochs: 25, learningRate: 0.4, l2: 1e-4, seed: 1234 };
/** Folds for the out-of-fold logits that Platt scaling is fitted on. */
const CALIBRATION_FOLDS = 5;

export interface TrainedClassifier {
  classifier: LinearClassifier;
  weights: Int8Array;
  meta: ClassifierMeta;
}

function encode(examples: readonly SeedExample[], buckets: number): { xs: SparseVector[]; ys: Uint8Array[] } {
  const xs = examples.map((e) => extractFeatures(canonicalize(e.text), buckets));
  const ys = examples.map((e) => Uint8Array.from(CLASSIFIER_HEADS, (h) => (e.labels.includes(h) ? 1 : 0)));
  return { xs, ys };
}

function floatLogits(weights: Float32Array, bias: Float32Array, x: SparseVector, heads: number): Float64Array {
  const z = Float64Array.from(bias);
  for (let i = 0; i < x.index.length; i++) {
    const base = x.index[i] * heads;
    for (let h = 0; h < heads; h++) z[h] += weights[base + h] * x.value[i];
  }
  return z;
}

/**
 * Fits Platt parameters on out-of-fold logits (each example scored by a model that never saw it; the
 * folds are interleaved by index, the data already shuffled by the split), then fits the final model
 * on all of `train`. Deterministic for a given seed.
 */
export function trainClassifier(train: readonly SeedExample[], opts: TrainOptions = DEFAULT_TRAIN_OPTIONS, extra: Record<string, unknown> = {}): TrainedClassifier {
  const heads = CLASSIFIER_HEADS.length;
  const { xs, ys } = encode(train, opts.buckets);
  const oof = xs.map(() => new Float64Array(heads));
  for (let fold = 0; fold < CALIBRATION_FOLDS; fold++) {
    const inFold = (i: number) => i % CALIBRATION_FOLDS === fold;
    const fit = trainOneVsRest(
      xs.filter((_, i) => !inFold(i)),
      ys.filter((_, i) => !inFold(i)),
      heads,
      { ...opts, seed: opts.seed + fold + 1 },
    );
    xs.forEach((x, i) => inFold(i) && oof[i].set(floatLogits(fit.weights, fit.bias, x, heads)));
  }
  const platt = CLASSIFIER_HEADS.map((_, h) =>
    fitPlatt(
      oof.map((z) => z[h]),
      ys.map((y) => y[h]),
    ),
  );
  const final = trainOneVsRest(xs, ys, heads, opts);
  const { q, scale } = quantize(final.weights, heads);
  const meta: ClassifierMeta = {
    format: CLASSIFIER_FORMAT,
    buckets: opts.buckets,
    heads: [...CLASSIFIER_HEADS],
    bias: Array.from(final.bias),
    scale,
    platt,
    seed: opts.seed,
    trainedOn: train.length,
    training: { epochs: opts.epochs, learningRate: opts.learningRate, l2: opts.l2, calibration: `platt, ${CALIBRATION_FOLDS}-fold out-of-fold`, ...extra },
  };
  return { classifier: new LinearClassifier(meta, q), weights: q, meta };
}

export interface CategoryMetrics {
  precision: number | null;
  recall: number | null;
  f1: number | null;
  support: number;
  tp: number;
  fp: number;
  fn: number;
}

export interface EvaluationReport {
  examples: number;
  /** The classifier alone, a category predicted when its calibrated score is ≥ 0.5. */
  classifier: Record<string, CategoryMetrics>;
  /** The layered moderator (rules + PII + classifier) under its policy: a category counts when flagged or blocked. */
  moderator: Record<string, CategoryMetrics>;
  /** Benign examples (hard ones apart) that the moderator flagged or blocked for anything. */
  falsePositiveRate: { benign: number | null; hardBenign: number | null };
  /** Mean squared error of the calibrated classifier scores against the labels, all heads. */
  brier: number;
}

function metrics(tp: number, fp: number, fn: number): CategoryMetrics {
  const precision = tp + fp > 0 ? tp / (tp + fp) : null;
  const recall = tp + fn > 0 ? tp / (tp + fn) : null;
  const f1 = precision !== null && recall !== null && precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : null;
  const r = (x: number | null) => (x === null ? null : Math.round(x * 1000) / 1000);
  return { precision: r(precision), recall: r(recall), f1: r(f1), support: tp + fn, tp, fp, fn };
}

export function evaluate(moderator: Moderator, examples: readonly SeedExample[], direction: ModerationDirection = 'input'): EvaluationReport {
  const counts = (): Record<string, [number, number, number]> => Object.fromEntries(CLASSIFIER_HEADS.map((h) => [h, [0, 0, 0]]));
  const cls = counts();
  const mod = counts();
  let brier = 0;
  let benign = 0, benignHit = 0, hard = 0, hardHit = 0;
  for (const e of examples) {
    const verdict = moderator.check(e.text, direction);
    const hit = new Set<AnyModerationCategory>([...verdict.decision.blocked, ...verdict.decision.flagged]);
    for (const h of CLASSIFIER_HEADS) {
      const label = e.labels.includes(h);
      const score = verdict.analysis.classifierScores[h] ?? 0;
      brier += (score - (label ? 1 : 0)) ** 2;
      tally(cls[h], label, score >= 0.5);
      tally(mod[h], label, hit.has(h));
    }
    if (e.labels.length === 0) {
      const any = verdict.decision.action !== 'allow';
      if (e.hard) (hard++, (hardHit += any ? 1 : 0));
      else (benign++, (benignHit += any ? 1 : 0));
    }
  }
  const table = (c: Record<string, [number, number, number]>) =>
    Object.fromEntries(Object.entries(c).map(([h, [tp, fp, fn]]) => [h, metrics(tp, fp, fn)]));
  return {
    examples: examples.length,
    classifier: table(cls),
    moderator: table(mod),
    falsePositiveRate: { benign: benign ? benignHit / benign : null, hardBenign: hard ? hardHit / hard : null },
    brier: Math.round((brier / (examples.length * CLASSIFIER_HEADS.length)) * 1e5) / 1e5,
  };
}

function tally(c: [number, number, number], label: boolean, predicted: boolean): void {
  if (label && predicted) c[0]++;
  else if (!label && predicted) c[1]++;
  else if (label && !predicted) c[2]++;
}
