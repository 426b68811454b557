/**
 * The PPO arithmetic over flat per-token arrays, with the gradients the native policy step needs: per-token KL
 * rewards, GAE, advantage whitening, the clipped policy loss and the clipped value loss (each with d loss / d input),
 * and the adaptive KL controller. Pure functions over plain arrays, so every formula is tested in isolation; no
 * model, rollout or queue code here.
 *
 * Layout: a batch of S sequences, each a run of L_s response tokens ("actions"); arrays hold the tokens of all
 * sequences back to back (`offsets[s]` is where sequence s starts, `offsets[S]` the total).
 */

/** Per-token reward: -klCoef * (logp_old - logp_ref) on every action (the k1 KL estimate), plus the sequence
 * score on its last action (Ziegler et al. 2019; OpenRLHF's compute_reward). */
export function klShapedRewards(scores: ArrayLike<number>, logpOld: ArrayLike<number>, logpRef: ArrayLike<number>, offsets: readonly number[], klCoef: number): Float64Array {
  const total = offsets[offsets.length - 1];
  const r = new Float64Array(total);
  for (let i = 0; i < total; i++) r[i] = -klCoef * (logpOld[i] - logpRef[i]);
  for (let s = 0; s + 1 < offsets.length; s++) if (offsets[s + 1] > offsets[s]) r[offsets[s + 1] - 1] += scores[s];
  return r;
}

/** Sum over each sequence's actions of (logp_old - logp_ref): a sample of KL(pi || ref) in nats per sequence. */
export function sequenceKl(logpOld: ArrayLike<number>, logpRef: ArrayLike<number>, offsets: readonly number[]): Float64Array {
  const out = new Float64Array(offsets.length - 1);
  for (let s = 0; s + 1 < offsets.length; s++) for (let i = offsets[s]; i < offsets[s + 1]; i++) out[s] += logpOld[i] - logpRef[i];
  return out;
}

/**
 * Generalized advantage estimation per sequence (Schulman et al. 2016): delta_t = r_t + gamma V_{t+1} - V_t with
 * V after the last action = 0 (the episode ends), A_t = delta_t + gamma lambda A_{t+1}; returns = A + V.
 */
export function gae(rewards: ArrayLike<number>, values: ArrayLike<number>, offsets: readonly number[], gamma: number, lambda: number): { advantages: Float64Array; returns: Float64Array } {
  const total = offsets[offsets.length - 1];
  const advantages = new Float64Array(total);
  const returns = new Float64Array(total);
  for (let s = 0; s + 1 < offsets.length; s++) {
    let next = 0;
    let nextValue = 0;
    for (let i = offsets[s + 1] - 1; i >= offsets[s]; i--) {
      const delta = rewards[i] + gamma * nextValue - values[i];
      next = delta + gamma * lambda * next;
      advantages[i] = next;
      returns[i] = next + values[i];
      nextValue = values[i];
    }
  }
  return { advantages, returns };
}

/** (x - mean) / (std + 1e-8) over all tokens (population std), as OpenRLHF / TRL whiten advantages. */
export function whiten(x: ArrayLike<number>): Float64Array {
  const { mean, std } = meanStd(x);
  return Float64Array.from(x, (v) => (v - mean) / (std + 1e-8));
}

export interface PolicyLossResult {
  /** Token-mean clipped surrogate loss. */
  loss: number;
  /** d loss / d logp per token (what policyBackward takes). */
  dlogp: Float64Array;
  /** Fraction of tokens whose clipped branch was taken (the gradient is zero there). */
  clipFraction: number;
  /** k3 estimate of KL(old || new) = mean((r - 1) - log r): how far this update moved the policy. */
  approxKl: number;
}

/**
 * PPO's clipped surrogate (Schulman et al. 2017) over n tokens: per token max(-A r, -A clip(r, 1 - eps, 1 + eps))
 * with r = exp(clamp(logp - logp_old, ±logRatioClamp)); token-mean over the mini-batch. The clamp keeps exp finite
 * after a bad step; where it binds the gradient is zero, like where the clip binds.
 */
export function clippedPolicyLoss(logp: ArrayLike<number>, logpOld: ArrayLike<number>, advantages: ArrayLike<number>, clip: number, logRatioClamp: number): PolicyLossResult {
  const n = logp.length;
  const dlogp = new Float64Array(n);
  if (n === 0) return { loss: 0, dlogp, clipFraction: 0, approxKl: 0 };
  let loss = 0;
  let clipped = 0;
  let kl = 0;
  for (let i = 0; i < n; i++) {
    const raw = logp[i] - logpOld[i];
    const lr = Math.max(-logRatioClamp, Math.min(logRatioClamp, raw));
    const r = Math.exp(lr);
    const a = advantages[i];
    const unclipped = -a * r;
    const rc = Math.max(1 - clip, Math.min(1 + clip, r));
    const clippedLoss = -a * rc;
    kl += r - 1 - lr;
    if (unclipped >= clippedLoss) {
      loss += unclipped;
      // d(-A r)/d logp = -A r, unless the log-ratio clamp binds (flat there).
      if (raw === lr) dlogp[i] = (-a * r) / n;
    } else {
      loss += clippedLoss;
    }
    if (r < 1 - clip || r > 1 + clip) clipped++;
  }
  return { loss: loss / n, dlogp, clipFraction: clipped / n, approxKl: kl / n };
}

/**
 * The k3 KL(π ‖ ref) penalty as a loss term, token mean: coef × mean(e^d − d − 1) with d = logp_ref − logp (Schulman's
 * unbiased, always-positive estimator), and its gradient coef × (1 − e^d) / n per token.
 */
export function k3KlLoss(logp: ArrayLike<number>, logpRef: ArrayLike<number>, coef: number): { loss: number; dlogp: Float64Array } {
  const n = logp.length;
  const dlogp = new Float64Array(n);
  if (n === 0) return { loss: 0, dlogp };
  let loss = 0;
  for (let i = 0; i < n; i++) {
    const d = logpRef[i] - logp[i];
    const e = Math.exp(d);
    loss += e - d - 1;
    dlogp[i] = (coef * (1 - e)) / n;
  }
  return { loss: (coef * loss) / n, dlogp };
}

export interface ValueLossResult {
  loss: number;
  dvalues: Float64Array;
  /** Fraction of tokens where the clipped value term was the larger one. */
  clipFraction: number;
}

/**
 * Clipped value loss (PPO2 / OpenRLHF ValueLoss): 0.5 max((v - R)^2, (v_old + clamp(v - v_old, ±clip) - R)^2),
 * token mean; clip <= 0 disables clipping.
 */
export function clippedValueLoss(values: ArrayLike<number>, valuesOld: ArrayLike<number>, returns: ArrayLike<number>, clip: number): ValueLossResult {
  const n = values.length;
  const dvalues = new Float64Array(n);
  if (n === 0) return { loss: 0, dvalues, clipFraction: 0 };
  let loss = 0;
  let clippedCount = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    const e1 = v - returns[i];
    if (clip <= 0) {
      loss += 0.5 * e1 * e1;
      dvalues[i] = e1 / n;
      continue;
    }
    const dv = v - valuesOld[i];
    const vc = valuesOld[i] + Math.max(-clip, Math.min(clip, dv));
    const e2 = vc - returns[i];
    if (e1 * e1 >= e2 * e2) {
      loss += 0.5 * e1 * e1;
      dvalues[i] = e1 / n;
    } else {
      loss += 0.5 * e2 * e2;
      clippedCount++;
      // d vc / d v is 1 inside the clip range, 0 where it binds.
      dvalues[i] = Math.abs(dv) < clip ? e2 / n : 0;
    }
  }
  return { loss: loss / n, dvalues, clipFraction: clippedCount / n };
}

/**
 * The KL coefficient: fixed, or adaptive as Ziegler et al. 2019 — after each step with `sequences` samples at
 * measured per-sequence KL, coef *= 1 + clamp(kl / target - 1, -0.2, 0.2) * sequences / horizon.
 */
export class KlController {
  constructor(
    public coef: number,
    private readonly adaptive: { target: number; horizon: number } | null,
  ) {}

  update(kl: number, sequences: number): number {
    if (this.adaptive === null || !Number.isFinite(kl)) return this.coef;
    const error = Math.max(-0.2, Math.min(0.2, kl / this.adaptive.target - 1));
    this.coef *= 1 + (error * sequences) / this.adaptive.horizon;
    return this.coef;
  }
}

/** Mean and population standard deviation. */
export function meanStd(x: ArrayLike<number>): { mean: number; std: number } {
  const n = x.length;
  if (n === 0) return { mean: NaN, std: NaN };
  let m = 0;
  for (let i = 0; i < n; i++) m += x[i];
  m /= n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (x[i] - m) ** 2;
  return { mean: m, std: Math.sqrt(v / n) };
}
