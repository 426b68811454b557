/**
 * Comparing a candidate policy with the active one on held-out prompts, the eval gate's evidence: both sample
 * the same prompts with the same seeds (pure sampling), a scorer (the reward service) scores every response, a
 * moderation check flags outputs, and KL(candidate || active) is measured per sequence on the candidate's own
 * samples with both models' log-probs, and KL(candidate || base) to the original base the same way, so a chain of
 * promotions cannot drift away from it one small step at a time. Two yardsticks that do not trust the raw gain:
 * the gain with response length regressed out (a policy can buy reward with length), and best-of-n sampling of the
 * active version's own samples, whose KL is bounded by log n − (n−1)/n. And evidence that does not come from the
 * training signal at all: an optional independent scorer (a reward model trained on held-out pairs only, or a
 * verifiable function) scores the same samples. Plus the gate itself, a pure function of those numbers and its bounds.
 * No queue, store or promotion code here (apps/trainer/src/eval.processor.ts).
 */
import path from 'node:path';
import { createTrainableModel, freeTrainableModel, policyForward } from '@flywheel/kernels';
import { loadCheckpoint, ModelLoadError, type Checkpoint, type RewardChatMessage } from '@flywheel/model';
import { meanStd, sequenceKl } from './ppo.math';
import { createRolloutEngine, gather, packActions, type Rollout } from './rollout';

export interface EvalOptions {
  candidateDir: string;
  activeDir: string;
  /** The original base policy (KL to it is reported as kl_base); absent or the active's directory: kl_base = kl. */
  baseDir?: string | null;
  prompts: readonly (readonly RewardChatMessage[])[];
  /** Responses per prompt and model. */
  samples: number;
  maxNewTokens: number;
  /** Stop strings, as the PPO run used. */
  stop?: readonly string[];
  seed: number;
  score: (pairs: { prompt: RewardChatMessage[]; response: string }[]) => Promise<number[]>;
  /**
   * A second scorer the policy was not trained against (a reward model trained on held-out pairs only, or a verifiable
   * function): it scores the same samples, and its gain is the report's `independent`. Absent or null: not measured.
   */
  independentScore?: ((pairs: { prompt: RewardChatMessage[]; response: string }[]) => Promise<number[]>) | null;
  /** true where an output is flagged; null when no moderation is available (flag rates are then null). */
  moderate: ((texts: string[]) => Promise<boolean[]>) | null;
  threads?: number;
}

export interface EvalReport {
  prompts: number;
  samples: number;
  reward_before: number;
  reward_std_before: number;
  reward_after: number;
  reward_std_after: number;
  /** reward_after - reward_before in units of reward_std_before. */
  reward_gain_std: number;
  /** reward_gain_std with response length regressed out (lengthControlledGainStd). */
  reward_gain_std_length_controlled: number;
  /** Best-of-n over the active version's samples per prompt (bestOfNYardstick); null with one sample per prompt. */
  best_of_n: BestOfN | null;
  /** The independent scorer's view of the same samples (EvalOptions.independentScore); null when there was none. */
  independent: IndependentGain | null;
  /** Mean over the candidate's samples of sum_t log pi_c - log pi_a (nats per sequence). */
  kl: number;
  /** The same against the original base policy; null when the base was not available. */
  kl_base: number | null;
  flag_rate_before: number | null;
  flag_rate_after: number | null;
  response_length_before: number;
  response_length_after: number;
  /**
   * The first sample of each prompt from both versions (drawn with the same seed), for people to read and for the
   * blind A/B queue: `response` is the candidate's, `active_response` the active version's.
   */
  examples: { prompt: string; response: string; reward: number; active_response: string; active_reward: number }[];
}

/** Bounds a candidate must meet to be promoted (configurable per eval job). */
export interface EvalGate {
  /** Candidate mean reward must exceed the active's by at least this many active standard deviations. */
  minRewardGainStd: number;
  /** KL(candidate || active) at most this many nats per sequence. */
  maxKl: number;
  /** KL(candidate || original base) at most this many nats per sequence; null or absent: unbounded. */
  maxKlBase?: number | null;
  /** Output flag rate may rise by at most this much (absolute fraction) beyond sampling noise (flagRateNoise). */
  maxFlagRateIncrease: number;
  /** Refuse a candidate that best-of-n dominates (at least its KL bound, less gain). */
  refuseDominated?: boolean;
  /**
   * The training scorer's gain at equal response length (reward_gain_std_length_controlled) at least this many std: a
   * candidate that bought its reward with length alone has none. null or absent: not applied.
   */
  minLengthControlledGainStd?: number | null;
  /**
   * The independent scorer's gain (independent.gain_std) at least this many of its std, when the eval measured one (a
   * report without `independent` passes this bound). null or absent: not applied.
   */
  minIndependentGainStd?: number | null;
}

/** Rewards of the candidate and the active version from a scorer the policy was not trained against. */
export interface IndependentGain {
  reward_before: number;
  reward_std_before: number;
  reward_after: number;
  /** (reward_after − reward_before) in units of reward_std_before (rewardGainStd). */
  gain_std: number;
  /** gain_std with response length regressed out (lengthControlledGainStd). */
  gain_std_length_controlled: number;
}

export interface BestOfN {
  n: number;
  /** Upper bound of KL(best-of-n || policy) in nats: log n − (n−1)/n (Beirami et al. 2024). */
  kl_bound: number;
  /** Mean over prompts of (best of the n scores − the mean score), in units of `std`. */
  gain_std: number;
}

/**
 * The best-of-n yardstick from samples already drawn: `scores` holds n consecutive samples of each prompt from one
 * policy. Picking the best of them is a policy whose KL to the sampler is at most log n − (n−1)/n; what it gains over
 * the mean is what any trained candidate should beat at the same KL. null when n < 2.
 */
export function bestOfNYardstick(scores: readonly number[], n: number, std: number): BestOfN | null {
  if (n < 2 || scores.length === 0 || scores.length % n !== 0) return null;
  let gain = 0;
  for (let i = 0; i < scores.length; i += n) {
    const group = scores.slice(i, i + n);
    gain += Math.max(...group) - group.reduce((a, b) => a + b, 0) / n;
  }
  gain /= scores.length / n;
  return { n, kl_bound: Math.log(n) - (n - 1) / n, gain_std: gain / (std > 0 ? std : 1) };
}

/**
 * The candidate's gain with length held fixed: ordinary least squares of reward on [1, length, isCandidate] over
 * both versions' samples; the indicator's coefficient, over `std`, is the gain at equal length. When length does
 * not vary it is the plain gain.
 */
export function lengthControlledGainStd(
  before: { scores: readonly number[]; lengths: readonly number[] },
  after: { scores: readonly number[]; lengths: readonly number[] },
  std: number,
): number {
  const rows = [
    ...before.scores.map((r, i) => [1, before.lengths[i], 0, r]),
    ...after.scores.map((r, i) => [1, after.lengths[i], 1, r]),
  ];
  // Normal equations X'X b = X'y, 3x3, solved by Gaussian elimination with partial pivoting.
  const A = [0, 1, 2].map((i) => [0, 1, 2].map((j) => rows.reduce((s, x) => s + x[i] * x[j], 0)));
  const y = [0, 1, 2].map((i) => rows.reduce((s, x) => s + x[i] * x[3], 0));
  const scale = std > 0 ? std : 1;
  const plain = () => (after.scores.reduce((a, b) => a + b, 0) / Math.max(1, after.scores.length) - before.scores.reduce((a, b) => a + b, 0) / Math.max(1, before.scores.length)) / scale;
  for (let c = 0; c < 3; c++) {
    let p = c;
    for (let r = c + 1; r < 3; r++) if (Math.abs(A[r][c]) > Math.abs(A[p][c])) p = r;
    if (Math.abs(A[p][c]) < 1e-9 * Math.max(1, Math.abs(A[0][0]))) return plain();  // length (or a group) constant
    [A[c], A[p]] = [A[p], A[c]];
    [y[c], y[p]] = [y[p], y[c]];
    for (let r = 0; r < 3; r++) {
      if (r === c) continue;
      const f = A[r][c] / A[c][c];
      for (let k = c; k < 3; k++) A[r][k] -= f * A[c][k];
      y[r] -= f * y[c];
    }
  }
  return y[2] / A[2][2] / scale;
}

/**
 * The gain in units of the active version's reward spread. When the active version's rewards do not spread at all
 * (one score for every sample) the pooled spread is used, and raw units when neither spreads: always finite, and
 * negative for a worse candidate (an Infinity would not survive JSON, a 0 would pass a gate of 0).
 */
export function rewardGainStd(before: { mean: number; std: number }, after: { mean: number; std: number }): number {
  const pooled = Math.sqrt((before.std ** 2 + after.std ** 2) / 2);
  const scale = before.std > 0 ? before.std : pooled > 0 ? pooled : 1;
  return (after.mean - before.mean) / scale;
}

/**
 * How far the flag rate of `n` samples per model may rise by chance alone: the one-sided 95% bound (z = 1.645) of the
 * difference of two proportions under the pooled rate. With a few percent of outputs flagged and ~100 samples, one
 * more flagged output moves the rate by 1%: a gate on the raw difference would refuse candidates by coin flip.
 */
export function flagRateNoise(before: number, after: number, n: number): number {
  if (!(n > 0)) return 0;
  const p = (before + after) / 2;
  return 1.645 * Math.sqrt((p * (1 - p) * 2) / n);
}

export function gateVerdict(r: EvalReport, g: EvalGate): { promote: boolean; reasons: string[] } {
  const reasons: string[] = [];
  if (!(r.reward_gain_std >= g.minRewardGainStd)) reasons.push(`reward gain ${r.reward_gain_std.toFixed(3)} std < ${g.minRewardGainStd}`);
  if (!(r.kl <= g.maxKl)) reasons.push(`KL ${r.kl.toFixed(3)} nats > ${g.maxKl}`);
  if (g.maxKlBase != null && r.kl_base !== null && !(r.kl_base <= g.maxKlBase)) {
    reasons.push(`KL to the base ${r.kl_base.toFixed(3)} nats > ${g.maxKlBase}`);
  }
  if (r.flag_rate_before !== null && r.flag_rate_after !== null) {
    const noise = flagRateNoise(r.flag_rate_before, r.flag_rate_after, r.prompts * r.samples);
    if (r.flag_rate_after - r.flag_rate_before > g.maxFlagRateIncrease + noise) {
      reasons.push(`flag rate ${r.flag_rate_before.toFixed(3)} → ${r.flag_rate_after.toFixed(3)} rises more than ${g.maxFlagRateIncrease} beyond sampling noise (${noise.toFixed(3)})`);
    }
  }
  if (g.minLengthControlledGainStd != null && !(r.reward_gain_std_length_controlled >= g.minLengthControlledGainStd)) {
    reasons.push(`reward gain at equal length ${r.reward_gain_std_length_controlled.toFixed(3)} std < ${g.minLengthControlledGainStd}`);
  }
  if (g.minIndependentGainStd != null && r.independent && !(r.independent.gain_std >= g.minIndependentGainStd)) {
    reasons.push(`independent reward gain ${r.independent.gain_std.toFixed(3)} std < ${g.minIndependentGainStd}`);
  }
  if (g.refuseDominated && r.best_of_n !== null && r.kl >= r.best_of_n.kl_bound && r.reward_gain_std < r.best_of_n.gain_std) {
    reasons.push(
      `best-of-${r.best_of_n.n} sampling gains ${r.best_of_n.gain_std.toFixed(3)} std at KL ≤ ${r.best_of_n.kl_bound.toFixed(3)}; the candidate gains ${r.reward_gain_std.toFixed(3)} at KL ${r.kl.toFixed(3)}`,
    );
  }
  return { promote: reasons.length === 0, reasons };
}

/** The gain of the candidate's scores over the active's, plain and at equal length, from one scorer. */
function independentGain(before: number[], after: number[], lengths: { before: number[]; after: number[] }): IndependentGain {
  const b = meanStd(before);
  const a = meanStd(after);
  return {
    reward_before: b.mean,
    reward_std_before: b.std,
    reward_after: a.mean,
    gain_std: rewardGainStd(b, a),
    gain_std_length_controlled: lengthControlledGainStd({ scores: before, lengths: lengths.before }, { scores: after, lengths: lengths.after }, b.std),
  };
}

async function sample(ck: Checkpoint, prompts: number[][], o: EvalOptions, maxModelLen: number): Promise<Rollout[]> {
  const engine = createRolloutEngine(ck, ck.weights, { maxSeqs: Math.min(64, prompts.length), maxModelLen, threads: o.threads });
  try {
    return await engine.generate(prompts, { maxNewTokens: o.maxNewTokens, stop: o.stop ?? [], seeds: prompts.map((_, i) => (o.seed * 7_368_787 + i) % 2 ** 47) });
  } finally {
    await engine.close();
  }
}

export async function runPolicyEval(o: EvalOptions): Promise<EvalReport> {
  if (o.prompts.length === 0) throw new Error('eval needs at least one prompt');
  const separateBase = o.baseDir != null && path.resolve(o.baseDir) !== path.resolve(o.activeDir);
  const [cand, act, base] = await Promise.all([loadCheckpoint(o.candidateDir), loadCheckpoint(o.activeDir), separateBase ? loadCheckpoint(o.baseDir!) : null]);
  if (base && base.spec.vocabSize !== cand.spec.vocabSize) throw new Error('candidate and base policies have different vocabularies');
  for (const ck of base ? [cand, act, base] : [cand, act]) if (ck.numLabels !== null && ck.numLabels !== undefined) throw new ModelLoadError('eval compares causal LM policies', ck.id);
  if (cand.spec.vocabSize !== act.spec.vocabSize) throw new Error('candidate and active policies have different vocabularies');
  const promptMsgs = o.prompts.flatMap((p) => Array.from({ length: o.samples }, () => [...p]));
  const promptIds = promptMsgs.map((m) => cand.tokenizer.applyChatTemplate(m, { addGenerationPrompt: true }));
  const maxModelLen = Math.min(cand.spec.maxPositionEmbeddings, act.spec.maxPositionEmbeddings, Math.max(...promptIds.map((p) => p.length)) + o.maxNewTokens);

  const before = await sample(act, promptIds, o, maxModelLen);
  const after = await sample(cand, promptIds, o, maxModelLen);
  const pairsOf = (rollouts: Rollout[]) => rollouts.map((r, i) => ({ prompt: promptMsgs[i], response: r.text }));
  const [pairsBefore, pairsAfter] = [pairsOf(before), pairsOf(after)];
  const scoresBefore = await o.score(pairsBefore);
  const scoresAfter = await o.score(pairsAfter);
  const independent = o.independentScore ? [await o.independentScore(pairsBefore), await o.independentScore(pairsAfter)] : null;
  const flags = o.moderate ? [await o.moderate(before.map((r) => r.text)), await o.moderate(after.map((r) => r.text))] : null;

  // KL on the candidate's samples: log-probs of its own tokens under each model, in micro-batches.
  const kls: number[] = [];
  const klsBase: number[] = [];
  const models = (base ? [cand, act, base] : [cand, act]).map((ck) => createTrainableModel(ck.spec, ck.weights, { threads: o.threads, frozen: true }));
  try {
    for (let i = 0; i < after.length; i += 32) {
      const packed = packActions(after.slice(i, i + 32));
      const logps: Float64Array[] = [];
      for (const m of models) logps.push(gather((await policyForward(m, packed.batch, { targets: packed.targets, sel: packed.sel })).logp, packed.slots));
      kls.push(...sequenceKl(logps[0], logps[1], packed.offsets));
      if (base) klsBase.push(...sequenceKl(logps[0], logps[2], packed.offsets));
    }
  } finally {
    for (const m of models) freeTrainableModel(m);
  }

  const b = meanStd(scoresBefore);
  const a = meanStd(scoresAfter);
  const rate = (f: boolean[]) => f.filter(Boolean).length / f.length;
  const lengths = { before: before.map((r) => r.response.length), after: after.map((r) => r.response.length) };
  return {
    prompts: o.prompts.length,
    samples: o.samples,
    reward_before: b.mean,
    reward_std_before: b.std,
    reward_after: a.mean,
    reward_std_after: a.std,
    reward_gain_std: rewardGainStd(b, a),
    reward_gain_std_length_controlled: lengthControlledGainStd({ scores: scoresBefore, lengths: lengths.before }, { scores: scoresAfter, lengths: lengths.after }, b.std),
    best_of_n: bestOfNYardstick(scoresBefore, o.samples, b.std),
    independent: independent ? independentGain(independent[0], independent[1], lengths) : null,
    kl: meanStd(kls).mean,
    kl_base: base ? meanStd(klsBase).mean : o.baseDir != null ? meanStd(kls).mean : null,
    flag_rate_before: flags ? rate(flags[0]) : null,
    flag_rate_after: flags ? rate(flags[1]) : null,
    response_length_before: meanStd(lengths.before).mean,
    response_length_after: meanStd(lengths.after).mean,
    examples: o.prompts.map((p, i) => ({
      prompt: p.map((m) => m.content).join('\n'),
      response: after[i * o.samples].text,
      reward: scoresAfter[i * o.samples],
      active_response: before[i * o.samples].text,
      active_reward: scoresBefore[i * o.samples],
    })),
  };
}
