/**
 * Training and evaluation of the moderation classifier from the seed set: features, out-of-fold Platt
 * calibration and per-head thresholds, the final fit, and per-category (and per-language) precision/recall
 * on a held-out split. Used by scripts/moderation (which writes the artifact) and by the specs; no file I/O.
 */
import type { AnyModerationCategory, ModerationDirection } from '@flywheel/contracts';
import {
  CLASSIFIER_FORMAT,
  fitPlatt,
  LinearClassifier,
  sigmoid,
  quantize,
  runToEnd,
  runYielding,
  trainOneVsRestEpochs,
  type ClassifierMeta,
  type TrainOptions,
} from './linear.classifier';
import type { Moderator } from './moderator';
import { extractFeatures, type SparseVector } from './ngram.features';
import { CLASSIFIER_HEADS, type SeedExample } from './seed.dataset';
import { canonicalize } from './text.normalize';

/**
 * l2 3e-3 (was 1e-2, before that 1e-4). On the 4 000-example seed set (seed-4) 1e-2 over-smooths: same
 * held-out recall as 3e-3 (0.81) but hard-benign false positives 6.0% vs 2-5%, and 7 trained hard-benign
 * texts flagged vs 1; 1e-3 and 2e-3 lose recall, 5e-3 and 3e-2 let more hard benign through.
 */
export const DEFAULT_TRAIN_OPTIONS: TrainOptions = { buckets: 1 << 16, epochs: 25, learningRate: 0.4, l2: 3e-3, seed: 1234 };
/** Folds for the out-of-fold logits that Platt scaling and the thresholds are fitted on. */
const CALIBRATION_FOLDS = 5;
/**
 * What a head's threshold aims for on out-of-fold scores: this recall of its positives, and at most this
 * share of benign texts (plain and hard) at or above it. Both a little stricter than the product target
 * (recall 0.9, hard-benign false positives 5% for all heads together) because out-of-fold scores come
 * from models fitted on 4/5 of the data and the held-out split is small. benignFpr 0.002 (was 0.003): on
 * seed-4 0.003 gave held-out hard-benign false positives of 6.4% (recall 0.81), 0.002 gives 5.1% (0.78),
 * 0.005 gives 8.5% (0.84); the benign bound is the target's hard constraint, so the stricter one.
 */
export const THRESHOLD_TARGET = { recall: 0.95, benignFpr: 0.002 } as const;
/** Thresholds stay inside this range: a head is never always-on or never-on because of a few examples. */
const THRESHOLD_RANGE = [0.02, 0.98] as const;

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
  return runToEnd(trainClassifierEpochs(train, opts, extra));
}

/**
 * trainClassifier that lets the event loop run after every epoch: a service training in its own process (the
 * trainer, whose control API and job locks must answer meanwhile) uses it. Same result for the same inputs.
 */
export function trainClassifierYielding(train: readonly SeedExample[], opts: TrainOptions = DEFAULT_TRAIN_OPTIONS, extra: Record<string, unknown> = {}): Promise<TrainedClassifier> {
  return runYielding(trainClassifierEpochs(train, opts, extra));
}

function* trainClassifierEpochs(train: readonly SeedExample[], opts: TrainOptions, extra: Record<string, unknown>): Generator<void, TrainedClassifier> {
  const heads = CLASSIFIER_HEADS.length;
  const { xs, ys } = encode(train, opts.buckets);
  const oof = xs.map(() => new Float64Array(heads));
  // Progress over all fits: the folds' epochs, then the final fit's.
  const steps = (CALIBRATION_FOLDS + 1) * opts.epochs;
  const progress = (fit: number): Pick<TrainOptions, 'onEpoch'> => ({
    onEpoch: opts.onEpoch && ((p) => opts.onEpoch!({ step: fit * opts.epochs + p.step, steps, loss: p.loss })),
  });
  for (let fold = 0; fold < CALIBRATION_FOLDS; fold++) {
    const inFold = (i: number) => i % CALIBRATION_FOLDS === fold;
    const fit = yield* trainOneVsRestEpochs(
      xs.filter((_, i) => !inFold(i)),
      ys.filter((_, i) => !inFold(i)),
      heads,
      { ...opts, seed: opts.seed + fold + 1, ...progress(fold) },
    );
    xs.forEach((x, i) => inFold(i) && oof[i].set(floatLogits(fit.weights, fit.bias, x, heads)));
  }
  const platt = CLASSIFIER_HEADS.map((_, h) =>
    fitPlatt(
      oof.map((z) => z[h]),
      ys.map((y) => y[h]),
    ),
  );
  const benign = train.map((e) => e.labels.length === 0);
  const chosen = CLASSIFIER_HEADS.map((_, h) =>
    chooseThreshold(
      oof.map((z) => sigmoid(platt[h].a * z[h] + platt[h].b)),
      ys.map((y) => y[h] === 1),
      benign,
    ),
  );
  const final = yield* trainOneVsRestEpochs(xs, ys, heads, { ...opts, ...progress(CALIBRATION_FOLDS) });
  const { q, scale } = quantize(final.weights, heads);
  const meta: ClassifierMeta = {
    format: CLASSIFIER_FORMAT,
    buckets: opts.buckets,
    heads: [...CLASSIFIER_HEADS],
    bias: Array.from(final.bias),
    scale,
    platt,
    thresholds: Object.fromEntries(CLASSIFIER_HEADS.map((h, i) => [h, chosen[i].threshold])),
    seed: opts.seed,
    trainedOn: train.length,
    training: {
      epochs: opts.epochs,
      learningRate: opts.learningRate,
      l2: opts.l2,
      calibration: `platt, ${CALIBRATION_FOLDS}-fold out-of-fold`,
      thresholdTarget: { ...THRESHOLD_TARGET, on: 'out-of-fold calibrated scores' },
      outOfFold: Object.fromEntries(CLASSIFIER_HEADS.map((h, i) => [h, { recall: chosen[i].recall, benignFpr: chosen[i].benignFpr }])),
      ...extra,
    },
  };
  return { classifier: new LinearClassifier(meta, q), weights: q, meta };
}

export interface ChosenThreshold {
  threshold: number;
  /** Out-of-fold recall and benign false-positive rate at `threshold` (null: no positives / no benign). */
  recall: number | null;
  benignFpr: number | null;
}

/**
 * One head's threshold from out-of-fold calibrated scores: `hi`, the highest cut that keeps
 * THRESHOLD_TARGET.recall of the positives, and `lo`, the cut above which at most
 * THRESHOLD_TARGET.benignFpr of benign texts (plain and hard) lie. With room between them (`hi > lo`)
 * the threshold is their midpoint in logit space, a margin either side. When they conflict the benign
 * bound wins: a false positive blocks or flags a user's ordinary request (and the gateway checks every
 * streamed delta), so recall is what gives; the shortfall shows in `recall` and in the held-out report.
 * No positives: the default 0.5.
 */
export function chooseThreshold(scores: readonly number[], positive: readonly boolean[], benign: readonly boolean[]): ChosenThreshold {
  const pos = scores.filter((_, i) => positive[i]).sort((a, b) => b - a);
  const neg = scores.filter((_, i) => benign[i] && !positive[i]).sort((a, b) => b - a);
  if (pos.length === 0) return { threshold: 0.5, recall: null, benignFpr: rate(neg, 0.5) };
  const hi = pos[Math.max(0, Math.ceil(THRESHOLD_TARGET.recall * pos.length) - 1)];
  // Just above the highest benign score that must stay below the cut (the scores are probabilities).
  const lo = Math.min(1 - 1e-6, (neg[Math.floor(THRESHOLD_TARGET.benignFpr * neg.length)] ?? 0) + 1e-6);
  const logit = (p: number) => Math.log(Math.max(p, 1e-9) / Math.max(1 - p, 1e-9));
  const t = hi > lo ? sigmoid((logit(hi) + logit(lo)) / 2) : lo;
  const threshold = Math.round(Math.min(THRESHOLD_RANGE[1], Math.max(THRESHOLD_RANGE[0], t)) * 1e6) / 1e6;
  return { threshold, recall: rate(pos, threshold), benignFpr: rate(neg, threshold) };
}

/** Share of `sorted` at or above `t` (null when empty), to three decimals. */
function rate(sorted: readonly number[], t: number): number | null {
  return sorted.length === 0 ? null : Math.round((sorted.filter((s) => s >= t).length / sorted.length) * 1000) / 1000;
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

/** One slice of a held-out set (all of it, or one language). */
export interface SliceReport {
  examples: number;
  /** The classifier alone, a category predicted when its calibrated score reaches the head's threshold. */
  classifier: Record<string, CategoryMetrics>;
  /** The layered moderator (rules + PII + classifier) under its policy: a category counts when flagged or blocked. */
  moderator: Record<string, CategoryMetrics>;
  /** Benign examples (hard ones apart) that the moderator flagged or blocked for anything. */
  falsePositiveRate: { benign: number | null; hardBenign: number | null };
}

export interface EvaluationReport extends SliceReport {
  /** Mean squared error of the calibrated classifier scores against the labels, all heads. */
  brier: number;
  /** The same figures per language of the examples (`en`, `zh`, …), in the order first seen. */
  languages: Record<string, SliceReport>;
}

function metrics(tp: number, fp: number, fn: number): CategoryMetrics {
  const precision = tp + fp > 0 ? tp / (tp + fp) : null;
  const recall = tp + fn > 0 ? tp / (tp + fn) : null;
  const f1 = precision !== null && recall !== null && precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : null;
  const r = (x: number | null) => (x === null ? null : Math.round(x * 1000) / 1000);
  return { precision: r(precision), recall: r(recall), f1: r(f1), support: tp + fn, tp, fp, fn };
}

/** Counts of one slice: per head [tp, fp, fn] for the classifier and the moderator, and benign hits. */
class SliceTally {
  examples = 0;
  private readonly cls = SliceTally.counts();
  private readonly mod = SliceTally.counts();
  private benign = [0, 0];
  private hard = [0, 0];

  private static counts(): Record<string, [number, number, number]> {
    return Object.fromEntries(CLASSIFIER_HEADS.map((h) => [h, [0, 0, 0]]));
  }

  add(e: SeedExample, predicted: ReadonlySet<string>, hit: ReadonlySet<string>, anyAction: boolean): void {
    this.examples++;
    for (const h of CLASSIFIER_HEADS) {
      const label = e.labels.includes(h);
      tally(this.cls[h], label, predicted.has(h));
      tally(this.mod[h], label, hit.has(h));
    }
    if (e.labels.length === 0) {
      const c = e.hard ? this.hard : this.benign;
      c[0]++;
      c[1] += anyAction ? 1 : 0;
    }
  }

  report(): SliceReport {
    const table = (c: Record<string, [number, number, number]>) => Object.fromEntries(Object.entries(c).map(([h, [tp, fp, fn]]) => [h, metrics(tp, fp, fn)]));
    const fpr = ([n, hits]: number[]) => (n ? Math.round((hits / n) * 1000) / 1000 : null);
    return {
      examples: this.examples,
      classifier: table(this.cls),
      moderator: table(this.mod),
      falsePositiveRate: { benign: fpr(this.benign), hardBenign: fpr(this.hard) },
    };
  }
}

export function evaluate(moderator: Moderator, examples: readonly SeedExample[], direction: ModerationDirection = 'input'): EvaluationReport {
  const all = new SliceTally();
  const byLang = new Map<string, SliceTally>();
  const thresholds = new Map(moderator.classifier.heads.map((h, i) => [h, moderator.classifier.thresholds[i]]));
  let brier = 0;
  for (const e of examples) {
    const verdict = moderator.check(e.text, direction);
    const hit = new Set<AnyModerationCategory>([...verdict.decision.blocked, ...verdict.decision.flagged]);
    const predicted = new Set<string>();
    for (const h of CLASSIFIER_HEADS) {
      const score = verdict.analysis.classifierScores[h] ?? 0;
      brier += (score - (e.labels.includes(h) ? 1 : 0)) ** 2;
      if (thresholds.has(h) && score >= thresholds.get(h)!) predicted.add(h);
    }
    const anyAction = verdict.decision.action !== 'allow';
    all.add(e, predicted, hit, anyAction);
    if (!byLang.has(e.lang)) byLang.set(e.lang, new SliceTally());
    byLang.get(e.lang)!.add(e, predicted, hit, anyAction);
  }
  return {
    ...all.report(),
    brier: Math.round((brier / Math.max(1, examples.length * CLASSIFIER_HEADS.length)) * 1e5) / 1e5,
    languages: Object.fromEntries([...byLang].map(([lang, t]) => [lang, t.report()])),
  };
}

function tally(c: [number, number, number], label: boolean, predicted: boolean): void {
  if (label && predicted) c[0]++;
  else if (!label && predicted) c[1]++;
  else if (label && !predicted) c[2]++;
}
