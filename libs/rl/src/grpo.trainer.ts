/**
 * The critic-free policy optimiser (GRPO, RLOO, REINFORCE++ by configuration): each step samples `groupSize`
 * responses for each of `promptsPerStep` prompts from the current policy (rollout.ts), scores them with the caller's
 * scorer, turns the scores into group-relative advantages (group.math.ts), drops the groups that all scored the same
 * (dynamic sampling), and updates the policy with the clipped surrogate (clip-higher) plus the k3 KL to a frozen
 * reference as a loss term (or a k1 penalty on the reward), AdamW with clipping. `online-dpo` learns from the same
 * groups as preference pairs instead (best over worst, the DPO loss against the reference: updateOnlineDpo). No value model: the group is the
 * baseline. Per-step metrics; resumable checkpoints (policy weights, AdamW state, data position, step and history),
 * bit-identical to an uninterrupted run. Not the BullMQ job (apps/trainer/src/grpo.processor.ts).
 *
 * Hyper-parameters and their defaults: grpoConfigSchema in libs/contracts (grpo.schemas.ts).
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { grpoConfigSchema, grpoStepMetricsSchema, type GrpoConfig, type GrpoConfigInput, type GrpoStepMetrics } from '@flywheel/contracts';
import {
  createTrainableModel,
  freeTrainableModel,
  getMergedWeights,
  optimizerStep,
  policyBackward,
  policyForward,
  zeroGrad,
  DEFAULT_OPTIMIZER,
  type OptimizerConfig,
  type TrainableModelHandle,
} from '@flywheel/kernels';
import type { RewardReference } from '@flywheel/contracts';
import { loadCheckpoint, ModelLoadError, type Checkpoint, type RewardChatMessage } from '@flywheel/model';
import { checkpointAfterStep, EpochOrder, findResumePoint, loadLoraResume, restoreResumePoint, saveResumePoint, seededPermutation, TRAINING_STATE_FILE, TrainingStoppedError, writeModelOutputs, type StepCheckpointHooks } from '@flywheel/train';
import { dpoLoss } from './dpo.loss';
import { groupAdvantages, groupPolicyLoss, groupPreferencePairs } from './group.math';
import { meanStd, sequenceKl } from './ppo.math';
import { createRolloutEngine, gather, modelMemoryMb, packActions, referenceForward, scatter, type Rollout } from './rollout';

/** Scores of a batch, optionally with each part of the reward per pair (the reward service's `components`). */
export type GroupScorer = (
  pairs: { prompt: RewardChatMessage[]; response: string; reference?: RewardReference }[],
) => Promise<number[] | { scores: number[]; components?: Record<string, number[]> }>;

export interface GrpoOptions extends StepCheckpointHooks {
  policyDir: string;
  prompts: readonly (readonly RewardChatMessage[])[];
  /** Each prompt's reference columns for verifiable rewards, index for index (absent: none). */
  references?: readonly (RewardReference | undefined)[];
  score: GroupScorer;
  outDir: string;
  config?: GrpoConfigInput;
  threads?: number;
  policyVersion?: string | null;
  resume?: boolean;
  onStep?: (m: GrpoStepMetrics) => void | Promise<void>;
  /** A resumed run: the step it continues from and the metrics of the steps before (a killed job may not have logged the last). */
  onResume?: (step: number, history: readonly GrpoStepMetrics[]) => void | Promise<void>;
}

export interface GrpoResult {
  steps: number;
  resumedFromStep: number;
  history: GrpoStepMetrics[];
  outDir: string;
  seconds: number;
}

export class GrpoStoppedError extends TrainingStoppedError {
  constructor(step: number) {
    super(step, 'GRPO');
  }
}

const STATE_DIR = 'grpo-state';

const totalsSchema = z.strictObject({ step: z.int().nonnegative(), policyVersion: z.string().nullable(), history: z.array(grpoStepMetricsSchema) });
type GrpoTotals = z.infer<typeof totalsSchema>;

interface GrpoRun {
  cfg: GrpoConfig;
  policyDir: string;
  outDir: string;
  stateDir: string;
  ck: Checkpoint;
  promptIds: number[][];
  maxModelLen: number;
  key: Record<string, unknown>;
  opt: OptimizerConfig;
}

/** Sampling seed of sample k of prompt i at step s: distinct per (seed, step, i, k), fixed across runs. */
const sampleSeed = (seed: number, step: number, i: number, k: number, group: number): number => (seed * 1_000_003 + step * 4099 + i * group + k) % 2 ** 47;
const miniBatchOrder = (n: number, seed: number, step: number, e: number): number[] => seededPermutation(n, seed + 7919 * (step + 1), e + 1);
const seconds = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;

export async function runGrpo(o: GrpoOptions): Promise<GrpoResult> {
  const run = await prepareGrpoRun(o);
  const { cfg } = run;
  const savedDir = path.join(run.stateDir, 'policy');
  const found = o.resume ? await findResumePoint(savedDir, run.key) : null;
  if (found?.mismatch) throw new Error(`${run.stateDir}: the saved run differs in ${found.mismatch.name} (${JSON.stringify(found.mismatch.saved)} vs ${JSON.stringify(found.mismatch.wanted)}); use a new out dir`);
  const saved = found && found.state.extra?.totals !== undefined ? totalsSchema.parse(found.state.extra.totals) : null;
  // A LoRA run resumes from the base plus its saved adapters (the saved weights are merged ones).
  const weights = !saved ? run.ck.weights : cfg.lora ? await loadLoraResume(run.ck.weights, savedDir) : (await loadCheckpoint(savedDir)).weights;
  const policy = createTrainableModel(run.ck.spec, weights, { threads: o.threads, lora: cfg.lora ? { ...cfg.lora, seed: cfg.seed } : undefined });
  // The reference: under LoRA the policy itself with its adapters off (the frozen base), else a frozen copy of the base.
  let reference: TrainableModelHandle | null = null;
  try {
    if (!cfg.lora) reference = createTrainableModel(run.ck.spec, run.ck.weights, { threads: o.threads, frozen: true });
  } catch (err) {
    freeTrainableModel(policy);
    throw err;
  }
  const started = process.hrtime.bigint();
  try {
    const prompts = EpochOrder.seeded(o.prompts.length, cfg.seed);
    const history: GrpoStepMetrics[] = saved?.history ?? [];
    const start = saved?.step ?? 0;
    if (saved && found) {
      restoreResumePoint(policy, found.state, prompts, run.stateDir);
      await o.onResume?.(start, history);
    }
    const save = (step: number) => saveGrpoState(run, policy, prompts, { step, policyVersion: o.policyVersion ?? null, history });

    for (let step = start; step < cfg.steps; step++) {
      const picks = prompts.take(cfg.promptsPerStep);
      let t0 = process.hrtime.bigint();
      const rollouts = await sampleGroups(run, policy, picks, step, o.threads);
      const timeRollout = seconds(t0);
      t0 = process.hrtime.bigint();
      const promptOf = (j: number) => picks[Math.floor(j / cfg.groupSize)];
      const scored = await o.score(rollouts.map((r, j) => ({ prompt: [...o.prompts[promptOf(j)]], response: r.text, ...(o.references?.[promptOf(j)] ? { reference: o.references[promptOf(j)] } : {}) })));
      const { scores, components } = Array.isArray(scored) ? { scores: scored, components: undefined } : scored;
      if (scores.length !== rollouts.length || scores.some((s) => !Number.isFinite(s))) throw new Error(`the scorer returned ${scores.length} scores for ${rollouts.length} responses (or a non-finite one)`);
      const timeScore = seconds(t0);
      t0 = process.hrtime.bigint();
      const metrics = await update(run, policy, reference, rollouts, scores, step);
      const rewards = components ? Object.fromEntries(Object.entries(components).map(([k, v]) => [k, meanStd(v).mean])) : undefined;
      const full: GrpoStepMetrics = {
        ...metrics,
        ...(rewards ? { rewards } : {}),
        time_rollout_s: timeRollout,
        time_score_s: timeScore,
        time_update_s: seconds(t0),
        model_memory_mb: modelMemoryMb([policy, reference]),
      };
      history.push(full);
      await o.onStep?.(full);

      if (await checkpointAfterStep(step + 1, cfg.steps, cfg.checkpointEvery, o, () => save(step + 1))) throw new GrpoStoppedError(step + 1);
    }
    await writeModelOutputs(policy, { outDir: run.outDir, modelDir: run.policyDir, spec: run.ck.spec });
    await save(cfg.steps);
    return { steps: cfg.steps, resumedFromStep: start, history, outDir: run.outDir, seconds: seconds(started) };
  } finally {
    freeTrainableModel(policy);
    if (reference !== null) freeTrainableModel(reference);
  }
}

async function prepareGrpoRun(o: GrpoOptions): Promise<GrpoRun> {
  const cfg = grpoConfigSchema.parse(o.config ?? {});
  if (o.prompts.length === 0) throw new Error(`${cfg.algorithm} needs at least one prompt`);
  const policyDir = path.resolve(o.policyDir);
  const outDir = path.resolve(o.outDir);
  const ck = await loadCheckpoint(policyDir);
  if (ck.format !== 'hf') throw new ModelLoadError(`${cfg.algorithm} needs a Hugging Face directory (GGUF is not trainable here)`, policyDir);
  if (ck.numLabels !== null && ck.numLabels !== undefined) throw new ModelLoadError(`${cfg.algorithm} needs a causal LM policy, not a sequence classifier`, policyDir);
  const promptIds = o.prompts.map((m) => ck.tokenizer.applyChatTemplate(m, { addGenerationPrompt: true }));
  const maxModelLen = Math.min(ck.spec.maxPositionEmbeddings, Math.max(...promptIds.map((p) => p.length)) + cfg.maxNewTokens);
  if (promptIds.some((p) => p.length + 1 > maxModelLen)) throw new Error(`a prompt leaves no room for a response within ${ck.spec.maxPositionEmbeddings} tokens`);
  const key = { policy: policyDir, prompts: o.prompts.length, ...cfg, steps: undefined, checkpointEvery: undefined };
  const opt: OptimizerConfig = { ...DEFAULT_OPTIMIZER, lr: cfg.lr, weightDecay: 0, maxGradNorm: cfg.maxGradNorm, warmupSteps: 0, totalSteps: 0 };
  return { cfg, policyDir, outDir, stateDir: path.join(outDir, STATE_DIR), ck, promptIds, maxModelLen, key, opt };
}

/** `groupSize` samples of each picked prompt, group by group (rollout j belongs to prompt picks[j / groupSize]). */
async function sampleGroups(run: GrpoRun, policy: TrainableModelHandle, picks: number[], step: number, threads: number | undefined): Promise<Rollout[]> {
  const { cfg } = run;
  const n = picks.length * cfg.groupSize;
  const engine = createRolloutEngine(run.ck, getMergedWeights(policy), { maxSeqs: Math.min(64, n), maxModelLen: run.maxModelLen, threads });
  try {
    const ids: number[][] = [];
    const seeds: number[] = [];
    picks.forEach((p, i) => {
      for (let k = 0; k < cfg.groupSize; k++) {
        ids.push(run.promptIds[p]);
        seeds.push(sampleSeed(cfg.seed, step, i, k, cfg.groupSize));
      }
    });
    return await engine.generate(ids, { maxNewTokens: cfg.maxNewTokens, stop: cfg.stop, seeds });
  } finally {
    await engine.close();
  }
}

/** Advantages, then `epochs` passes of mini-batches over the kept groups' samples; the step's metrics (times apart). */
async function update(
  run: GrpoRun,
  policy: TrainableModelHandle,
  reference: TrainableModelHandle | null,
  rollouts: Rollout[],
  scores: number[],
  step: number,
): Promise<UpdateMetrics> {
  const { cfg } = run;
  if (cfg.algorithm === 'online-dpo') return updateOnlineDpo(run, policy, reference, rollouts, scores, step);
  const { all, logpOld, entropy, logpRef, seqKl } = await scoreRollouts(policy, reference, rollouts);
  // KL in the reward: each sequence's score pays β × its k1 KL before the group baseline is taken.
  const rewards = cfg.klMode === 'reward' ? scores.map((s, i) => s - cfg.klCoef * seqKl[i]) : scores;
  const { advantages, flatGroups } = groupAdvantages(rewards, cfg.groupSize, cfg.algorithm, cfg.scaleStd);
  const kept = rollouts.map((_, i) => i).filter((i) => !(cfg.dynamicSampling && flatGroups[Math.floor(i / cfg.groupSize)]));

  const t = { policyLoss: 0, klLoss: 0, clipFrac: 0, approxKl: 0, gradNorm: 0, updates: 0 };
  for (let e = 0; e < cfg.epochs && kept.length > 0; e++) {
    const order = miniBatchOrder(kept.length, cfg.seed, step, e).map((k) => kept[k]);
    for (let m0 = 0; m0 < order.length; m0 += cfg.miniBatch) {
      const mb = order.slice(m0, m0 + cfg.miniBatch);
      const sub = packActions(mb.map((r) => rollouts[r]));
      const pick = (a: Float64Array): Float64Array => {
        const out = new Float64Array(sub.slots.length);
        let k = 0;
        for (const r of mb) for (let i = all.offsets[r]; i < all.offsets[r + 1]; i++) out[k++] = a[i];
        return out;
      };
      zeroGrad(policy);
      const f = await policyForward(policy, sub.batch, { targets: sub.targets, sel: sub.sel });
      const loss = groupPolicyLoss(gather(f.logp, sub.slots), pick(logpOld), pick(logpRef), mb.map((r) => advantages[r]), sub.offsets, {
        clipLow: cfg.clipLow,
        clipHigh: cfg.clipHigh,
        logRatioClamp: cfg.logRatioClamp,
        klCoef: cfg.klMode === 'loss' ? cfg.klCoef : 0,
        aggregation: cfg.aggregation,
      });
      await policyBackward(policy, f.pass, { dlogp: scatter(loss.dlogp, sub.slots, sub.batch.B * sub.batch.T) });
      const s = await optimizerStep(policy, run.opt);
      t.policyLoss += loss.policyLoss;
      t.klLoss += loss.kl;
      t.clipFrac += loss.clipFraction;
      t.approxKl += loss.approxKl;
      t.gradNorm += s.gradNorm;
      t.updates++;
    }
  }
  const per = (x: number) => (t.updates > 0 ? x / t.updates : 0);
  return stepMetrics(cfg, step, rollouts, scores, seqKl, entropy, {
    groups_kept: flatGroups.length > 0 ? kept.length / rollouts.length : 0,
    approx_kl: per(t.approxKl),
    clip_fraction: per(t.clipFrac),
    policy_loss: per(t.policyLoss),
    kl_loss: per(t.klLoss),
    grad_norm: per(t.gradNorm),
  });
}

/**
 * Online DPO's step: each group's best and worst sample as a preference pair, `epochs` passes of mini-batches of pairs
 * (miniBatch sequences, so miniBatch / 2 pairs) through the DPO loss against the reference's log-probs of the same
 * samples; every token of a sequence gets its sequence's d loss / d log π. Metrics as the other algorithms' (policy_loss
 * is the DPO loss, clip_fraction and kl_loss 0, groups_kept the share of samples in a pair).
 */
async function updateOnlineDpo(
  run: GrpoRun,
  policy: TrainableModelHandle,
  reference: TrainableModelHandle | null,
  rollouts: Rollout[],
  scores: number[],
  step: number,
): Promise<UpdateMetrics> {
  const { cfg } = run;
  const { all, logpOld, entropy, logpRef, seqKl } = await scoreRollouts(policy, reference, rollouts);
  const seqSum = (a: ArrayLike<number>, offsets: ArrayLike<number>, s: number): number => {
    let sum = 0;
    for (let i = offsets[s]; i < offsets[s + 1]; i++) sum += a[i];
    return sum;
  };
  const pairs = groupPreferencePairs(scores, cfg.groupSize);
  const perBatch = Math.max(1, Math.floor(cfg.miniBatch / 2));
  const t = { loss: 0, approxKl: 0, gradNorm: 0, updates: 0 };
  for (let e = 0; e < cfg.epochs && pairs.length > 0; e++) {
    const order = miniBatchOrder(pairs.length, cfg.seed, step, e).map((k) => pairs[k]);
    for (let m0 = 0; m0 < order.length; m0 += perBatch) {
      const mb = order.slice(m0, m0 + perBatch);
      // Chosen sequences first, then rejected: sequence i and mb.length + i are one pair.
      const seqs = [...mb.map((p) => p.chosen), ...mb.map((p) => p.rejected)];
      const sub = packActions(seqs.map((r) => rollouts[r]));
      zeroGrad(policy);
      const f = await policyForward(policy, sub.batch, { targets: sub.targets, sel: sub.sel });
      const logp = gather(f.logp, sub.slots);
      const P = mb.length;
      const sums = seqs.map((_, s) => seqSum(logp, sub.offsets, s));
      const refSums = seqs.map((r) => seqSum(logpRef, all.offsets, r));
      const loss = dpoLoss(
        { policyChosen: sums.slice(0, P), policyRejected: sums.slice(P), referenceChosen: refSums.slice(0, P), referenceRejected: refSums.slice(P) },
        { beta: cfg.dpoBeta },
      );
      const dlogp = new Float64Array(logp.length);
      let approx = 0;
      for (let s = 0; s < seqs.length; s++) {
        const d = s < P ? loss.dPolicyChosen[s] : loss.dPolicyRejected[s - P];
        for (let i = sub.offsets[s], k = all.offsets[seqs[s]]; i < sub.offsets[s + 1]; i++, k++) {
          dlogp[i] = d;
          // k3 estimate of KL(old || new) per token: how far this mini-batch has moved from the rollout policy.
          const logRatio = logp[i] - logpOld[k];
          approx += Math.exp(logRatio) - 1 - logRatio;
        }
      }
      await policyBackward(policy, f.pass, { dlogp: scatter(dlogp, sub.slots, sub.batch.B * sub.batch.T) });
      const st = await optimizerStep(policy, run.opt);
      t.loss += loss.loss;
      t.approxKl += logp.length > 0 ? approx / logp.length : 0;
      t.gradNorm += st.gradNorm;
      t.updates++;
    }
  }
  const per = (x: number) => (t.updates > 0 ? x / t.updates : 0);
  return stepMetrics(cfg, step, rollouts, scores, seqKl, entropy, {
    groups_kept: rollouts.length > 0 ? (2 * pairs.length) / rollouts.length : 0,
    approx_kl: per(t.approxKl),
    clip_fraction: 0,
    policy_loss: per(t.loss),
    kl_loss: 0,
    grad_norm: per(t.gradNorm),
  });
}

type UpdateMetrics = Omit<GrpoStepMetrics, 'time_rollout_s' | 'time_score_s' | 'time_update_s'>;

/** The rollout policy's and the reference's per-token log-probs of a step's samples (and what follows from them). */
async function scoreRollouts(policy: TrainableModelHandle, reference: TrainableModelHandle | null, rollouts: Rollout[]) {
  const all = packActions(rollouts);
  const oldF = await policyForward(policy, all.batch, { targets: all.targets, sel: all.sel });
  const logpOld = gather(oldF.logp, all.slots);
  const entropy = meanStd(gather(oldF.entropy, all.slots)).mean;
  const logpRef = gather((await referenceForward(policy, reference, all)).logp, all.slots);
  const seqKl = sequenceKl(logpOld, logpRef, all.offsets);
  return { all, logpOld, entropy, logpRef, seqKl };
}

/** A step's metrics: what every algorithm reports the same way, plus the update's own figures. */
function stepMetrics(
  cfg: GrpoConfig,
  step: number,
  rollouts: Rollout[],
  scores: number[],
  seqKl: ArrayLike<number>,
  entropy: number,
  update: Pick<UpdateMetrics, 'groups_kept' | 'approx_kl' | 'clip_fraction' | 'policy_loss' | 'kl_loss' | 'grad_norm'>,
): UpdateMetrics {
  const reward = meanStd(scores);
  const groupStds = Array.from({ length: scores.length / cfg.groupSize }, (_, g) => meanStd(scores.slice(g * cfg.groupSize, (g + 1) * cfg.groupSize)).std);
  return {
    step: step + 1,
    steps: cfg.steps,
    reward_mean: reward.mean,
    reward_std: reward.std,
    group_reward_std: meanStd(groupStds).mean,
    groups_kept: update.groups_kept,
    kl: meanStd(seqKl).mean,
    approx_kl: update.approx_kl,
    clip_fraction: update.clip_fraction,
    entropy,
    policy_loss: update.policy_loss,
    kl_loss: update.kl_loss,
    response_length: meanStd(rollouts.map((r) => r.response.length)).mean,
    stop_fraction: rollouts.filter((r) => r.finish === 'stop').length / rollouts.length,
    grad_norm: update.grad_norm,
  };
}

async function saveGrpoState(run: GrpoRun, policy: TrainableModelHandle, prompts: EpochOrder, totals: GrpoTotals): Promise<void> {
  const dir = path.join(run.stateDir, 'policy');
  await rm(path.join(dir, TRAINING_STATE_FILE), { force: true });
  await saveResumePoint(policy, {
    outDir: dir,
    modelDir: run.policyDir,
    spec: run.ck.spec,
    state: { ...prompts.position(), optimizer: { ...run.opt }, extra: { ...run.key, totals } },
  });
}
