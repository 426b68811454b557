/**
 * Comparing a candidate policy with the active one on held-out prompts, the eval gate's evidence: both sample
 * the same prompts with the same seeds (pure sampling), a scorer (the reward service) scores every response, a
 * moderation check flags outputs, and KL(candidate || active) is measured per sequence on the candidate's own
 * samples with both models' log-probs, and KL(candidate || base) to the original base the same way, so a chain of
 * promotions cannot drift away from it one small step at a time. Plus the gate itself, a pure function of those
 * numbers and its bounds.
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
  /** Mean over the candidate's samples of sum_t log pi_c - log pi_a (nats per sequence). */
  kl: number;
  /** The same against the original base policy; null when the base was not available. */
  kl_base: number | null;
  flag_rate_before: number | null;
  flag_rate_after: number | null;
  response_length_before: number;
  response_length_after: number;
  /** One candidate sample per prompt (the first), for people to read. */
  examples: { prompt: string; response: string; reward: number }[];
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
  return { promote: reasons.length === 0, reasons };
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
  const scoresBefore = await o.score(before.map((r, i) => ({ prompt: promptMsgs[i], response: r.text })));
  const scoresAfter = await o.score(after.map((r, i) => ({ prompt: promptMsgs[i], response: r.text })));
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
  return {
    prompts: o.prompts.length,
    samples: o.samples,
    reward_before: b.mean,
    reward_std_before: b.std,
    reward_after: a.mean,
    reward_std_after: a.std,
    reward_gain_std: rewardGainStd(b, a),
    kl: meanStd(kls).mean,
    kl_base: base ? meanStd(klsBase).mean : o.baseDir != null ? meanStd(kls).mean : null,
    flag_rate_before: flags ? rate(flags[0]) : null,
    flag_rate_after: flags ? rate(flags[1]) : null,
    response_length_before: meanStd(before.map((r) => r.response.length)).mean,
    response_length_after: meanStd(after.map((r) => r.response.length)).mean,
    examples: o.prompts.map((p, i) => ({ prompt: p.map((m) => m.content).join('\n'), response: after[i * o.samples].text, reward: scoresAfter[i * o.samples] })),
  };
}
