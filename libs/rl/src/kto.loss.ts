/**
 * The KTO objective (Kahneman-Tversky Optimization, Ethayarajh et al. 2024, eq. 7, as TRL's KTOTrainer computes it)
 * over a batch of examples labelled desirable or undesirable, from summed response log-probs under the policy and the
 * frozen reference. The reference point z0 is the batch's mean log-ratio on mismatched prompt/completion pairs,
 * clamped at 0 and held constant (TRL detaches it); d loss / d policy log-prob per example and the metrics TRL logs
 * come with it. Pure functions over plain arrays: which pairs are mismatched, and the model, are the trainer's.
 */
import { pairCredit, sigmoid } from '@flywheel/train';

export interface KtoLogps {
  /** Per example i: log π(completion_i | prompt_i) summed over the completion's tokens (nats), policy and reference. */
  policy: ArrayLike<number>;
  reference: ArrayLike<number>;
  /** Per mismatched pair j (one example's prompt, another's completion): the same sums, for z0 only. */
  policyKl: ArrayLike<number>;
  referenceKl: ArrayLike<number>;
}

export interface KtoLossOptions {
  /** β: how sharply the value function saturates, and the strength of the pull to the reference (TRL default 0.1). */
  beta: number;
  /** λ_D and λ_U (default 1): weights of desirable and undesirable losses; raise the rarer kind's (ktoWeightAdvice). */
  desirableWeight?: number;
  undesirableWeight?: number;
}

export interface KtoLossResult {
  /** Mean over all N examples of losses[i] (TRL's losses.nanmean()). */
  loss: number;
  /**
   * With r_i = π_i - ref_i: λ_D (1 - σ(β (r_i - z0))) for a desirable example, λ_U (1 - σ(β (z0 - r_i))) for an
   * undesirable one.
   */
  losses: Float64Array;
  /** d loss / d π_i of the mean `loss` (so it carries the 1/N), with z0 a constant. */
  dPolicy: Float64Array;
  /** Implied rewards β (π_i - ref_i). */
  rewards: Float64Array;
  /** z0 in nats: max(0, mean_j (policyKl_j - referenceKl_j)); 0 without a mismatched pair. TRL logs it as `kl`. */
  kl: number;
  desirable: number;
  undesirable: number;
  /** Mean implied reward of the desirable and of the undesirable examples (NaN when there is none). */
  chosenReward: number;
  rejectedReward: number;
  /** chosenReward - rejectedReward (TRL's rewards/margins). */
  margin: number;
}

/** Throws on β or a weight outside (0, ∞). */
export function checkKtoLossOptions(o: KtoLossOptions): void {
  const positive = (x: number, name: string) => {
    if (!(x > 0) || !Number.isFinite(x)) throw new Error(`ktoLoss: ${name} must be a positive number, got ${x}`);
  };
  positive(o.beta, 'beta');
  positive(o.desirableWeight ?? 1, 'desirableWeight');
  positive(o.undesirableWeight ?? 1, 'undesirableWeight');
}

/** labels[i]: true for a desirable example (thumbs up, rating ≥ 4, a correction), false for an undesirable one. */
export function ktoLoss(x: KtoLogps, labels: ArrayLike<boolean>, o: KtoLossOptions): KtoLossResult {
  const N = labels.length;
  if (x.policy.length !== N || x.reference.length !== N) throw new Error(`ktoLoss: policy and reference must have one entry per example (${N})`);
  if (x.policyKl.length !== x.referenceKl.length) throw new Error('ktoLoss: policyKl and referenceKl must have one entry per mismatched pair');
  checkKtoLossOptions(o);
  const wd = o.desirableWeight ?? 1;
  const wu = o.undesirableWeight ?? 1;
  let klSum = 0;
  for (let j = 0; j < x.policyKl.length; j++) klSum += x.policyKl[j] - x.referenceKl[j];
  const z0 = x.policyKl.length > 0 ? Math.max(0, klSum / x.policyKl.length) : 0;
  const r: KtoLossResult = {
    loss: N === 0 ? NaN : 0,
    losses: new Float64Array(N),
    dPolicy: new Float64Array(N),
    rewards: new Float64Array(N),
    kl: z0,
    desirable: 0,
    undesirable: 0,
    chosenReward: NaN,
    rejectedReward: NaN,
    margin: NaN,
  };
  let chosen = 0;
  let rejected = 0;
  for (let i = 0; i < N; i++) {
    const ratio = x.policy[i] - x.reference[i];
    r.rewards[i] = o.beta * ratio;
    // v = β (r - z0) for desirable, β (z0 - r) for undesirable; loss w (1 - σ(v)) = w σ(-v); d/dv = -w σ(v) σ(-v).
    const sign = labels[i] ? 1 : -1;
    const w = labels[i] ? wd : wu;
    const v = sign * o.beta * (ratio - z0);
    r.losses[i] = w * sigmoid(-v);
    r.loss += r.losses[i] / N;
    r.dPolicy[i] = (-w * sigmoid(v) * sigmoid(-v) * sign * o.beta) / N;
    if (labels[i]) {
      r.desirable++;
      chosen += r.rewards[i];
    } else {
      r.undesirable++;
      rejected += r.rewards[i];
    }
  }
  if (r.desirable > 0) r.chosenReward = chosen / r.desirable;
  if (r.undesirable > 0) r.rejectedReward = rejected / r.undesirable;
  r.margin = r.chosenReward - r.rejectedReward;
  return r;
}

/**
 * How well implied rewards separate desirable from undesirable examples: over every (desirable, undesirable) pair,
 * 1 when the desirable one's reward is higher, 0.5 for a tie (an untrained policy ties them all), else 0; the mean
 * (the ROC AUC of the reward as a classifier of the label). NaN unless both kinds are present.
 */
export function rewardSeparation(rewards: ArrayLike<number>, labels: ArrayLike<boolean>): number {
  const good: number[] = [];
  const bad: number[] = [];
  for (let i = 0; i < labels.length; i++) (labels[i] ? good : bad).push(rewards[i]);
  if (good.length === 0 || bad.length === 0) return NaN;
  let credit = 0;
  for (const g of good) for (const b of bad) credit += pairCredit(g - b);
  return credit / (good.length * bad.length);
}

/**
 * TRL's advice on imbalanced data (KTO paper eq. 8): λ_D n_D / (λ_U n_U) should lie in [1, 4/3]. A sentence naming
 * the ranges that would fix one of the two weights, or null when the counts are equal or a weight is in range.
 */
export function ktoWeightAdvice(desirable: number, undesirable: number, desirableWeight: number, undesirableWeight: number): string | null {
  const nd = Math.max(desirable, 1);
  const nu = Math.max(undesirable, 1);
  if (nd === nu) return null;
  const round = (v: number) => Math.round(v * 100) / 100;
  const dLow = round((nu * undesirableWeight) / nd);
  const dHigh = round(((nu * undesirableWeight) / nd) * 1.33);
  const uLow = round((nd * desirableWeight) / nu / 1.33);
  const uHigh = round((nd * desirableWeight) / nu);
  if ((dLow <= desirableWeight && desirableWeight <= dHigh) || (uLow <= undesirableWeight && undesirableWeight <= uHigh)) return null;
  return (
    `${desirable} desirable and ${undesirable} undesirable examples: with these counts set either desirableWeight in ` +
    `[${dLow}, ${dHigh}] or undesirableWeight in [${uLow}, ${uHigh}] (not both)`
  );
}
