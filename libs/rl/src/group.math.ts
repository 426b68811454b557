/**
 * The arithmetic of critic-free policy optimisation over groups of samples per prompt (GRPO, RLOO, REINFORCE++,
 * best-of-n rejection-sampling fine-tuning):
 * group-relative advantages, the clipped surrogate with separate lower and upper clip bounds (DAPO's clip-higher)
 * aggregated per token or per sequence, and the k3 KL penalty to the reference as a loss term, each with
 * d loss / d logp for the native policy step. Pure functions over flat per-token arrays in ppo.math.ts's layout
 * (`offsets[s]` is where sequence s starts); no model, rollout or queue code here.
 */
import type { GrpoConfig } from '@flywheel/contracts';
import { meanStd } from './ppo.math';

/** The algorithms that learn from advantages (online-dpo learns from pairs: groupPreferencePairs). */
export type GroupAlgorithm = Exclude<GrpoConfig['algorithm'], 'online-dpo'>;

export interface GroupAdvantages {
  /** One advantage per sequence (every token of a sequence shares it). */
  advantages: Float64Array;
  /** Groups whose rewards all tie: no learning signal (dynamic sampling drops them). */
  flatGroups: boolean[];
}

/**
 * Online DPO's preference pairs from `rewards` in groups of `groupSize`: each group whose samples do not all tie gives
 * (its best, its worst), the first of a tie at either end; indices into `rewards`.
 */
export function groupPreferencePairs(rewards: ArrayLike<number>, groupSize: number): Array<{ chosen: number; rejected: number }> {
  if (groupSize < 1 || rewards.length % groupSize !== 0) throw new Error(`${rewards.length} rewards do not split into groups of ${groupSize}`);
  const pairs: Array<{ chosen: number; rejected: number }> = [];
  for (let g = 0; g < rewards.length; g += groupSize) {
    let best = g;
    let worst = g;
    for (let k = g + 1; k < g + groupSize; k++) {
      if (rewards[k] > rewards[best]) best = k;
      if (rewards[k] < rewards[worst]) worst = k;
    }
    if (rewards[best] > rewards[worst]) pairs.push({ chosen: best, rejected: worst });
  }
  return pairs;
}

/**
 * Sequence advantages from `rewards` laid out as consecutive groups of `groupSize` samples of one prompt:
 *   grpo         A_i = r_i − mean_g, divided by the group's std when `scaleStd` (Shao et al. 2024; Dr. GRPO drops it);
 *   rloo         A_i = r_i − mean_{j≠i} r_j = n/(n−1) (r_i − mean_g) (Ahmadian et al. 2024);
 *   reinforce++  A_i = r_i − mean_g, then whitened over the whole batch (global normalisation, Hu 2025);
 *   rft          A_i = 1 for the group's best sample (the first of a tie at the top), 0 for the rest: the policy
 *                gradient of log π(best), i.e. supervised fine-tuning on the best of n, online (RAFT, Dong et al.
 *                2023; ReST / rejection-sampling fine-tuning). Best-of-n costs at most log n − (n−1)/n nats of KL.
 *                groupSize 1 or a tied group keeps nothing.
 * A group of one sample has no baseline: its advantage is 0 (and it counts as flat).
 */
export function groupAdvantages(rewards: ArrayLike<number>, groupSize: number, algorithm: GroupAlgorithm, scaleStd: boolean): GroupAdvantages {
  const n = rewards.length;
  if (groupSize < 1 || n % groupSize !== 0) throw new Error(`${n} rewards do not split into groups of ${groupSize}`);
  const advantages = new Float64Array(n);
  const flatGroups: boolean[] = [];
  for (let g = 0; g < n; g += groupSize) {
    const group = Array.from({ length: groupSize }, (_, k) => rewards[g + k]);
    const { mean, std } = meanStd(group);
    const flat = groupSize < 2 || group.every((r) => r === group[0]);
    flatGroups.push(flat);
    if (algorithm === 'rft') {
      if (!flat) advantages[g + group.indexOf(Math.max(...group))] = 1;
      continue;
    }
    for (let k = 0; k < groupSize; k++) {
      if (flat) continue;
      const centred = group[k] - mean;
      if (algorithm === 'rloo') advantages[g + k] = (groupSize / (groupSize - 1)) * centred;
      else if (algorithm === 'grpo' && scaleStd) advantages[g + k] = centred / (std + 1e-6);
      else advantages[g + k] = centred;
    }
  }
  if (algorithm === 'reinforce++') {
    const { mean, std } = meanStd(advantages);
    for (let i = 0; i < n; i++) advantages[i] = (advantages[i] - mean) / (std + 1e-8);
  }
  return { advantages, flatGroups };
}

export type LossAggregation = 'token' | 'sequence';

export interface GroupLossOptions {
  clipLow: number;
  clipHigh: number;
  logRatioClamp: number;
  /** Coefficient of the k3 KL(π ‖ ref) term in the loss; 0 leaves it out. */
  klCoef: number;
  /**
   * token: every token of the mini-batch weighs the same (DAPO; long answers are not diluted); sequence: the mean
   * over sequences of each sequence's token mean (the original GRPO).
   */
  aggregation: LossAggregation;
}

export interface GroupLossResult {
  /** Clipped surrogate plus klCoef × k3, aggregated as asked. */
  loss: number;
  /** The surrogate part alone, and the k3 part alone (before klCoef), in the same aggregation. */
  policyLoss: number;
  kl: number;
  dlogp: Float64Array;
  clipFraction: number;
  /** k3 estimate of KL(old ‖ new) over the tokens: how far this update moved the policy. */
  approxKl: number;
}

/**
 * Per token t of sequence s: surrogate −min(A_s ρ, A_s clip(ρ, 1 − clipLow, 1 + clipHigh)) with
 * ρ = exp(clamp(logp − logp_old, ±logRatioClamp)), plus klCoef × k3 where k3 = e^{d} − d − 1, d = logp_ref − logp
 * (Schulman's unbiased, always-positive estimator of KL(π ‖ ref); d k3 / d logp = 1 − e^{d}). Weights: 1 / tokens
 * (token aggregation) or 1 / (sequences × L_s) (sequence aggregation). Where the clip or the clamp binds the surrogate
 * is flat.
 */
export function groupPolicyLoss(
  logp: ArrayLike<number>,
  logpOld: ArrayLike<number>,
  logpRef: ArrayLike<number>,
  seqAdvantages: ArrayLike<number>,
  offsets: readonly number[],
  o: GroupLossOptions,
): GroupLossResult {
  const total = offsets[offsets.length - 1];
  const dlogp = new Float64Array(total);
  const sequences = offsets.length - 1;
  const nonEmpty = offsets.slice(1).filter((end, s) => end > offsets[s]).length;
  if (total === 0 || nonEmpty === 0) return { loss: 0, policyLoss: 0, kl: 0, dlogp, clipFraction: 0, approxKl: 0 };
  let policyLoss = 0, kl = 0, clipped = 0, moved = 0;
  for (let s = 0; s < sequences; s++) {
    const [a, b] = [offsets[s], offsets[s + 1]];
    if (b === a) continue;
    const w = o.aggregation === 'token' ? 1 / total : 1 / (nonEmpty * (b - a));
    const adv = seqAdvantages[s];
    for (let i = a; i < b; i++) {
      const raw = logp[i] - logpOld[i];
      const lr = Math.max(-o.logRatioClamp, Math.min(o.logRatioClamp, raw));
      const r = Math.exp(lr);
      const unclipped = -adv * r;
      const clippedLoss = -adv * Math.max(1 - o.clipLow, Math.min(1 + o.clipHigh, r));
      moved += r - 1 - lr;
      if (r < 1 - o.clipLow || r > 1 + o.clipHigh) clipped++;
      if (unclipped >= clippedLoss) {
        policyLoss += w * unclipped;
        if (raw === lr) dlogp[i] += w * unclipped;
      } else {
        policyLoss += w * clippedLoss;
      }
      const d = logpRef[i] - logp[i];
      const ed = Math.exp(d);
      kl += w * (ed - d - 1);
      if (o.klCoef !== 0) dlogp[i] += w * o.klCoef * (1 - ed);
    }
  }
  return { loss: policyLoss + o.klCoef * kl, policyLoss, kl, dlogp, clipFraction: clipped / total, approxKl: moved / total };
}
