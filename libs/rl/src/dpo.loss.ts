/**
 * The DPO objective over a batch of preference pairs (Rafailov et al. 2023, sigmoid loss; with label smoothing ε
 * the conservative variant of Mitchell 2023 / TRL's cDPO), from summed response log-probs under the policy and the
 * frozen reference, with d loss / d policy log-prob per pair and the implied-reward metrics TRL reports. A pure
 * function over plain arrays; no model, batching or optimizer code here.
 */
import { logSigmoid, pairCredit, sigmoid } from '@flywheel/train';

/** Per pair i: log π(response | prompt) summed over the response tokens, in nats. */
export interface DpoLogps {
  policyChosen: ArrayLike<number>;
  policyRejected: ArrayLike<number>;
  referenceChosen: ArrayLike<number>;
  referenceRejected: ArrayLike<number>;
}

export interface DpoLossOptions {
  /** β: the strength of the implicit KL penalty to the reference (TRL default 0.1). */
  beta: number;
  /** ε in [0, 0.5): the assumed probability that a pair's label is flipped; 0 is plain sigmoid DPO. */
  labelSmoothing?: number;
}

export interface DpoLossResult {
  /** Mean over pairs of loss_i, loss_i = -(1-ε) log σ(β m_i) - ε log σ(-β m_i), m_i = (πc - rc) - (πr - rr). */
  loss: number;
  losses: Float64Array;
  /** d loss / d πc_i and d loss / d πr_i of the mean `loss` (so they already carry the 1/P). */
  dPolicyChosen: Float64Array;
  dPolicyRejected: Float64Array;
  /** Implied rewards β (π - r) of each side, and their difference (TRL's rewards/margins). */
  chosenRewards: Float64Array;
  rejectedRewards: Float64Array;
  margins: Float64Array;
  /** Mean credit: 1 when the chosen implied reward is higher, 0.5 for a tie (the untrained policy ties), else 0. */
  accuracy: number;
}

/** Throws on β outside (0, ∞) or ε outside [0, 0.5). */
export function checkDpoLossOptions(o: DpoLossOptions): void {
  if (!(o.beta > 0) || !Number.isFinite(o.beta)) throw new Error(`dpoLoss: beta must be a positive number, got ${o.beta}`);
  const eps = o.labelSmoothing ?? 0;
  if (!(eps >= 0 && eps < 0.5)) throw new Error(`dpoLoss: labelSmoothing must be in [0, 0.5), got ${eps}`);
}

export function dpoLoss(x: DpoLogps, o: DpoLossOptions): DpoLossResult {
  const P = x.policyChosen.length;
  if (x.policyRejected.length !== P || x.referenceChosen.length !== P || x.referenceRejected.length !== P) {
    throw new Error(`dpoLoss: the four log-prob arrays must have one entry per pair (${P})`);
  }
  checkDpoLossOptions(o);
  const eps = o.labelSmoothing ?? 0;
  const r: DpoLossResult = {
    loss: 0,
    losses: new Float64Array(P),
    dPolicyChosen: new Float64Array(P),
    dPolicyRejected: new Float64Array(P),
    chosenRewards: new Float64Array(P),
    rejectedRewards: new Float64Array(P),
    margins: new Float64Array(P),
    accuracy: NaN,
  };
  if (P === 0) return { ...r, loss: NaN };
  let credit = 0;
  for (let i = 0; i < P; i++) {
    const chosen = x.policyChosen[i] - x.referenceChosen[i];
    const rejected = x.policyRejected[i] - x.referenceRejected[i];
    const z = o.beta * (chosen - rejected);
    r.losses[i] = -(1 - eps) * logSigmoid(z) - eps * logSigmoid(-z);
    r.loss += r.losses[i] / P;
    // d loss_i / d z = -(1-ε) σ(-z) + ε σ(z); z moves with +β πc and -β πr.
    const dz = -(1 - eps) * sigmoid(-z) + eps * sigmoid(z);
    r.dPolicyChosen[i] = (o.beta * dz) / P;
    r.dPolicyRejected[i] = (-o.beta * dz) / P;
    r.chosenRewards[i] = o.beta * chosen;
    r.rejectedRewards[i] = o.beta * rejected;
    r.margins[i] = r.chosenRewards[i] - r.rejectedRewards[i];
    credit += pairCredit(r.margins[i]);
  }
  r.accuracy = credit / P;
  return r;
}
