/**
 * The PPO trainer: rollouts from the current policy (rollout.ts), reward scores from a scorer the caller provides
 * (the reward service over NATS in the trainer job, a local reward model in tests), a per-token KL penalty against
 * a frozen reference, a critic (ppo.critic.ts), GAE, whitened advantages, the clipped policy and value losses
 * (ppo.math.ts), a fixed or adaptive KL coefficient, AdamW with clipping, several epochs over mini-batches; per-step
 * metrics and timings; resumable checkpoints (@flywheel/train resume points of policy and critic: weights, AdamW
 * state, data position; the policy's also the step, KL coefficient, policy version and metric history). Under LoRA
 * the policy and (by default) the critic train adapters on frozen bases. Not the BullMQ job
 * (apps/trainer/src/ppo.processor.ts).
 *
 * Hyper-parameters and their defaults: ppoConfigSchema in libs/contracts (rl-jobs.schemas.ts).
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import {
  ppoConfigSchema,
  ppoStepMetricsSchema,
  type LoraJobOptions,
  type PpoConfig,
  type PpoConfigInput,
  type PpoStepMetrics,
  type RewardReference,
} from '@flywheel/contracts';
import {
  createTrainableModel,
  freeTrainableModel,
  getMergedWeights,
  optimizerStep,
  policyBackward,
  policyForward,
  zeroGrad,
  DEFAULT_OPTIMIZER,
  type ModelSpec,
  type OptimizerConfig,
  type TrainableModelHandle,
  type WeightMap,
} from '@flywheel/kernels';
import { loadCheckpoint, ModelLoadError, type Checkpoint, type RewardChatMessage } from '@flywheel/model';
import {
  checkpointAfterStep,
  type StepCheckpointHooks,
  EpochOrder,
  findResumePoint,
  loadLoraResume,
  readTrainingState,
  restoreResumePoint,
  saveResumePoint,
  seededPermutation,
  TRAINING_STATE_FILE,
  TrainingStoppedError,
  writeModelOutputs,
  type TrainingState,
} from '@flywheel/train';
import { createCritic, criticUpdate, criticValues, VALUE_HEAD } from './ppo.critic';
import { clippedPolicyLoss, gae, k3KlLoss, KlController, klShapedRewards, meanStd, sequenceKl, whiten } from './ppo.math';
import { createRolloutEngine, gather, modelMemoryMb, packActions, referenceForward, scatter, type ActionBatch, type Rollout } from './rollout';

export type PpoScorer = (pairs: { prompt: RewardChatMessage[]; response: string; reference?: RewardReference }[]) => Promise<number[]>;

export interface PpoOptions extends StepCheckpointHooks {
  policyDir: string;
  /** Critic initialisation: a reward-model checkpoint (as OpenRLHF); default the policy with a zero value head. */
  criticDir?: string | null;
  prompts: readonly (readonly RewardChatMessage[])[];
  /** Each prompt's reference columns for verifiable rewards, index for index (absent: none). */
  references?: readonly (RewardReference | undefined)[];
  score: PpoScorer;
  outDir: string;
  config?: PpoConfigInput;
  threads?: number;
  /** Written into the resume state and the result (lineage). */
  policyVersion?: string | null;
  resume?: boolean;
  onStep?: (m: PpoStepMetrics) => void | Promise<void>;
  onResume?: (step: number) => void | Promise<void>;
}

export interface PpoResult {
  steps: number;
  resumedFromStep: number;
  history: PpoStepMetrics[];
  klCoef: number;
  outDir: string;
  seconds: number;
}

export class PpoStoppedError extends TrainingStoppedError {
  constructor(step: number) {
    super(step, 'PPO');
  }
}

/** Under outDir: resume points `policy/` and `critic/`; the policy's training state marks a complete checkpoint. */
const STATE_DIR = 'ppo-state';

/** What the policy's training state keeps beside the run key (`extra.totals`): the run so far. */
const totalsSchema = z.strictObject({
  step: z.int().nonnegative(),
  klCoef: z.number(),
  policyVersion: z.string().nullable(),
  history: z.array(ppoStepMetricsSchema),
});
type PpoTotals = z.infer<typeof totalsSchema>;

/** Everything a run fixes before its first step. */
interface PpoRun {
  cfg: PpoConfig;
  policyDir: string;
  /** The reward model the critic starts from, null when it starts from the policy. */
  criticDir: string | null;
  outDir: string;
  stateDir: string;
  ck: Checkpoint;
  criticCk: Checkpoint | null;
  criticSpec: ModelSpec;
  /** The critic's adapters (criticLora, else the policy's lora), or null for a full critic. */
  criticLora: LoraJobOptions | null;
  /** Prompt token ids (chat template with the assistant opener), by prompt index. */
  promptIds: number[][];
  maxModelLen: number;
  /** The options a resumed run must share with the saved one. */
  key: Record<string, unknown>;
  policyOpt: OptimizerConfig;
  criticOpt: OptimizerConfig;
}

/** The trained policy, the frozen reference, and the critic (one-label value head). */
interface PpoModels {
  policy: TrainableModelHandle;
  /** null under LoRA: the reference is the policy with its adapters off. */
  reference: TrainableModelHandle | null;
  critic: TrainableModelHandle;
}

/** A saved run to continue: the policy's and the critic's training states, and the totals. */
interface PpoResume {
  policy: TrainingState;
  critic: TrainingState;
  totals: PpoTotals;
}

/** Sampling seed of rollout i at step s: distinct per (seed, step, i), fixed across runs. */
const rolloutSeed = (seed: number, step: number, i: number): number => (seed * 1_000_003 + step * 4099 + i) % 2 ** 47;

/** The row order of PPO epoch e at step s: a permutation seeded by (seed, step, e) alone. */
const miniBatchOrder = (n: number, seed: number, step: number, e: number): number[] => seededPermutation(n, seed + 7919 * (step + 1), e + 1);

const seconds = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;

export async function runPpo(o: PpoOptions): Promise<PpoResult> {
  const run = await preparePpoRun(o);
  const { cfg } = run;
  const saved = o.resume ? await readPpoResume(run) : null;
  const models = await createPpoModels(run, saved !== null, o.threads);
  const started = process.hrtime.bigint();
  try {
    const prompts = EpochOrder.seeded(o.prompts.length, cfg.seed);
    const kl = new KlController(saved?.totals.klCoef ?? cfg.klCoef, cfg.klTarget === null ? null : { target: cfg.klTarget, horizon: cfg.klHorizon });
    const history: PpoStepMetrics[] = saved?.totals.history ?? [];
    const start = saved?.totals.step ?? 0;
    if (saved) {
      restoreResumePoint(models.policy, saved.policy, prompts, run.stateDir);
      restoreResumePoint(models.critic, saved.critic, null, run.stateDir);
      await o.onResume?.(start);
    }
    const save = (step: number): Promise<void> =>
      savePpoState(run, models, prompts, { step, klCoef: kl.coef, policyVersion: o.policyVersion ?? null, history });

    for (let step = start; step < cfg.steps; step++) {
      const picks = prompts.take(cfg.rolloutBatch);
      const { rollouts, timeSync, timeRollout } = await collectRollouts(run, models.policy, picks, step, o.threads);
      let t0 = process.hrtime.bigint();
      const scores = await scoreRollouts(o, rollouts, picks);
      const timeScore = seconds(t0);
      t0 = process.hrtime.bigint();
      const estimate = await estimateAdvantages(run, models, rollouts, scores, kl.coef);
      const update = await updatePolicyAndCritic(run, models, rollouts, estimate, step, kl.coef);
      const timeUpdate = seconds(t0);

      const metrics = {
        ...stepMetrics(run, step, { rollouts, scores, estimate, update, klCoef: kl.coef }, { timeRollout, timeScore, timeUpdate, timeSync }),
        model_memory_mb: modelMemoryMb([models.policy, models.reference, models.critic]),
      };
      kl.update(metrics.kl, rollouts.length);
      history.push(metrics);
      await o.onStep?.(metrics);

      if (await checkpointAfterStep(step + 1, cfg.steps, cfg.checkpointEvery, o, () => save(step + 1))) throw new PpoStoppedError(step + 1);
    }

    // The trained policy: a plain HF causal-LM directory.
    await writeModelOutputs(models.policy, { outDir: run.outDir, modelDir: run.policyDir, spec: run.ck.spec });
    await save(cfg.steps);
    return { steps: cfg.steps, resumedFromStep: start, history, klCoef: kl.coef, outDir: run.outDir, seconds: seconds(started) };
  } finally {
    freeTrainableModel(models.policy);
    if (models.reference !== null) freeTrainableModel(models.reference);
    freeTrainableModel(models.critic);
  }
}

/** Parses the config, loads and checks the checkpoints, tokenizes the prompts and fixes the run key. */
async function preparePpoRun(o: PpoOptions): Promise<PpoRun> {
  const cfg = ppoConfigSchema.parse(o.config ?? {});
  if (o.prompts.length === 0) throw new Error('ppo needs at least one prompt');
  const policyDir = path.resolve(o.policyDir);
  const outDir = path.resolve(o.outDir);
  const ck = await loadCheckpoint(policyDir);
  if (ck.format !== 'hf') throw new ModelLoadError('ppo needs a Hugging Face directory (GGUF is not trainable here)', policyDir);
  if (ck.numLabels !== null && ck.numLabels !== undefined) throw new ModelLoadError('ppo needs a causal LM policy, not a sequence classifier', policyDir);
  const criticDir = o.criticDir ? path.resolve(o.criticDir) : null;
  const criticCk = criticDir ? await loadCheckpoint(criticDir) : null;
  if (criticDir && criticCk && criticCk.numLabels !== 1) throw new ModelLoadError('the critic must start from a reward model (num_labels 1)', criticDir);

  const promptIds = o.prompts.map((m) => ck.tokenizer.applyChatTemplate(m, { addGenerationPrompt: true }));
  const maxModelLen = Math.min(ck.spec.maxPositionEmbeddings, Math.max(...promptIds.map((p) => p.length)) + cfg.maxNewTokens);
  if (promptIds.some((p) => p.length + 1 > maxModelLen)) throw new Error(`a prompt leaves no room for a response within ${ck.spec.maxPositionEmbeddings} tokens`);

  // The key holds the critic's resolved LoRA. Absent, it is the policy's lora, except for a run saved before
  // criticLora existed (its key has no entry): that run trained a full critic and resumes as one.
  const stateDir = path.join(outDir, STATE_DIR);
  const criticLora = cfg.criticLora !== undefined ? cfg.criticLora : (await savedBeforeCriticLora(stateDir)) ? null : (cfg.lora ?? null);
  const key = { policy: policyDir, critic: criticDir, prompts: o.prompts.length, ...cfg, criticLora, steps: undefined, checkpointEvery: undefined };
  const policyOpt: OptimizerConfig = { ...DEFAULT_OPTIMIZER, lr: cfg.lr, weightDecay: 0, maxGradNorm: cfg.maxGradNorm, warmupSteps: 0, totalSteps: 0 };
  const criticOpt: OptimizerConfig = { ...policyOpt, lr: cfg.criticLr };
  const criticSpec = criticCk ? criticCk.spec : ck.spec;
  return { cfg, policyDir, criticDir, outDir, stateDir, ck, criticCk, criticSpec, criticLora, promptIds, maxModelLen, key, policyOpt, criticOpt };
}

/** Whether stateDir holds a run whose key predates `criticLora` (no entry for it). */
async function savedBeforeCriticLora(stateDir: string): Promise<boolean> {
  const dir = path.join(stateDir, 'policy');
  if (!existsSync(path.join(dir, TRAINING_STATE_FILE))) return false;
  return !('criticLora' in ((await readTrainingState(dir)).extra ?? {}));
}

/**
 * The saved run under stateDir, or null when there is none (or one from before this state format). A run saved with
 * other options is refused rather than mixed.
 */
async function readPpoResume(run: PpoRun): Promise<PpoResume | null> {
  const policyDir = path.join(run.stateDir, 'policy');
  const found = await findResumePoint(policyDir, run.key);
  if (!found || found.state.extra?.totals === undefined) return null;
  const m = found.mismatch;
  if (m) throw new Error(`${run.stateDir}: the saved PPO run differs in ${m.name} (${JSON.stringify(m.saved)} vs ${JSON.stringify(m.wanted)}); use a new out dir`);
  const totals = totalsSchema.safeParse(found.state.extra.totals);
  if (!totals.success) throw new ModelLoadError(`unreadable PPO state (${totals.error.issues[0].message})`, path.join(policyDir, TRAINING_STATE_FILE));
  return { policy: found.state, critic: await readTrainingState(path.join(run.stateDir, 'critic')), totals: totals.data };
}

/** Policy and critic from the saved run (or the policy checkpoint and the critic's start), the reference from the policy checkpoint. */
async function createPpoModels(run: PpoRun, resumed: boolean, threads: number | undefined): Promise<PpoModels> {
  const { ck, criticCk } = run;
  const criticInit = (): WeightMap => {
    if (criticCk) return criticCk.weights;
    const w = new Map(ck.weights);
    w.set(VALUE_HEAD, new Float32Array(ck.spec.hiddenSize)); // a zero value head: V = 0 until trained
    return w;
  };
  const { lora, seed } = run.cfg;
  const savedPolicy = path.join(run.stateDir, 'policy');
  // A LoRA run resumes from the base plus its saved adapters (the saved weights are merged ones).
  const policyWeights = !resumed ? ck.weights : lora ? await loadLoraResume(ck.weights, savedPolicy) : (await loadCheckpoint(savedPolicy)).weights;
  const policy = createTrainableModel(ck.spec, policyWeights, { threads, lora: lora ? { ...lora, seed } : undefined });
  let reference: TrainableModelHandle | null = null;
  try {
    if (!lora) reference = createTrainableModel(ck.spec, ck.weights, { threads, frozen: true });
    // The critic's base is its own copy (the native model owns its weights); frozen under LoRA, it holds no gradients
    // or moments. Its A is drawn from its own seed, not the policy's.
    const criticSeed = (seed + 1) % 2 ** 32;
    const critic = await createCritic({ spec: run.criticSpec, init: criticInit, lora: run.criticLora, seed: criticSeed, threads }, resumed ? path.join(run.stateDir, 'critic') : null);
    return { policy, reference, critic };
  } catch (err) {
    freeTrainableModel(policy);
    if (reference !== null) freeTrainableModel(reference);
    throw err;
  }
}

/** Weight sync (an engine over the policy's current weights) and one sampled response per picked prompt. */
async function collectRollouts(run: PpoRun, policy: TrainableModelHandle, picks: number[], step: number, threads: number | undefined) {
  const { cfg } = run;
  let t0 = process.hrtime.bigint();
  const engine = createRolloutEngine(run.ck, getMergedWeights(policy), { maxSeqs: Math.min(64, cfg.rolloutBatch), maxModelLen: run.maxModelLen, threads });
  const timeSync = seconds(t0);
  t0 = process.hrtime.bigint();
  let rollouts: Rollout[];
  try {
    rollouts = await engine.generate(
      picks.map((p) => run.promptIds[p]),
      { maxNewTokens: cfg.maxNewTokens, stop: cfg.stop, seeds: picks.map((_, i) => rolloutSeed(cfg.seed, step, i)) },
    );
  } finally {
    await engine.close();
  }
  // A response needs one action to learn from; an immediate stop still has its stop token.
  return { rollouts, timeSync, timeRollout: seconds(t0) };
}

/** One finite score per rollout from the caller's scorer. */
async function scoreRollouts(o: PpoOptions, rollouts: Rollout[], picks: number[]): Promise<number[]> {
  const scores = await o.score(rollouts.map((r, i) => ({ prompt: [...o.prompts[picks[i]]], response: r.text, ...(o.references?.[picks[i]] ? { reference: o.references[picks[i]] } : {}) })));
  if (scores.length !== rollouts.length || scores.some((s) => !Number.isFinite(s))) throw new Error(`the scorer returned ${scores.length} scores for ${rollouts.length} responses (or a non-finite one)`);
  return scores;
}

/** Per action (ppo.math.ts order): the rollout's log-probs and values, KL-shaped rewards, GAE returns, whitened advantages. */
interface AdvantageEstimate {
  all: ActionBatch;
  logpOld: Float64Array;
  valuesOld: Float64Array;
  returns: Float64Array;
  adv: Float64Array;
  logpRef: Float64Array;
  /** Per sequence KL to the reference (nats). */
  seqKl: Float64Array;
  entropy: number;
}

/** Old log-probs, reference log-probs and values of the rollouts; rewards and advantages from them. */
async function estimateAdvantages(run: PpoRun, models: PpoModels, rollouts: Rollout[], scores: number[], klCoef: number): Promise<AdvantageEstimate> {
  const all = packActions(rollouts);
  const oldF = await policyForward(models.policy, all.batch, { targets: all.targets, sel: all.sel });
  const logpOld = gather(oldF.logp, all.slots);
  const entropy = meanStd(gather(oldF.entropy, all.slots)).mean;
  const logpRef = gather((await referenceForward(models.policy, models.reference, all)).logp, all.slots);
  const valuesOld = await criticValues(models.critic, all);
  const seqKl = sequenceKl(logpOld, logpRef, all.offsets);
  // Normalised scores make klCoef mean the same whatever the reward model's scale; in `loss` mode the KL is not in
  // the reward at all but a term of the policy loss (updatePolicyAndCritic).
  const shaped = run.cfg.rewardNorm === 'batch' ? whiten(scores) : scores;
  const rewards = klShapedRewards(shaped, logpOld, logpRef, all.offsets, run.cfg.klMode === 'reward' ? klCoef : 0);
  const { advantages, returns } = gae(rewards, valuesOld, all.offsets, run.cfg.gamma, run.cfg.lambda);
  return { all, logpOld, logpRef, valuesOld, returns, adv: whiten(advantages), seqKl, entropy };
}

/** Sums over a step's optimizer updates (divide by `updates` for means). */
interface UpdateTotals {
  policyLoss: number;
  valueLoss: number;
  clipFrac: number;
  approxKl: number;
  vClipFrac: number;
  gradNorm: number;
  updates: number;
}

/** PPO epochs over mini-batches of sequences: the clipped policy loss and the clipped value loss, one AdamW step each. */
async function updatePolicyAndCritic(run: PpoRun, models: PpoModels, rollouts: Rollout[], est: AdvantageEstimate, step: number, klCoef: number): Promise<UpdateTotals> {
  const { cfg } = run;
  const { policy, critic } = models;
  const t: UpdateTotals = { policyLoss: 0, valueLoss: 0, clipFrac: 0, approxKl: 0, vClipFrac: 0, gradNorm: 0, updates: 0 };
  for (let e = 0; e < cfg.ppoEpochs; e++) {
    const rows = miniBatchOrder(rollouts.length, cfg.seed, step, e);
    for (let m0 = 0; m0 < rows.length; m0 += cfg.miniBatch) {
      const mb = rows.slice(m0, m0 + cfg.miniBatch);
      const sub = packActions(mb.map((r) => rollouts[r]));
      // Per-action arrays of this mini-batch, in its own action order.
      const pick = (a: Float64Array): Float64Array => {
        const out = new Float64Array(sub.slots.length);
        let k = 0;
        for (const r of mb) for (let i = est.all.offsets[r]; i < est.all.offsets[r + 1]; i++) out[k++] = a[i];
        return out;
      };
      const subN = sub.batch.B * sub.batch.T;
      zeroGrad(policy);
      const f = await policyForward(policy, sub.batch, { targets: sub.targets, sel: sub.sel });
      const logp = gather(f.logp, sub.slots);
      const pl = clippedPolicyLoss(logp, pick(est.logpOld), pick(est.adv), cfg.clip, cfg.logRatioClamp);
      if (cfg.klMode === 'loss') {
        const kl = k3KlLoss(logp, pick(est.logpRef), klCoef);
        for (let i = 0; i < pl.dlogp.length; i++) pl.dlogp[i] += kl.dlogp[i];
      }
      await policyBackward(policy, f.pass, { dlogp: scatter(pl.dlogp, sub.slots, subN) });
      const ps = await optimizerStep(policy, run.policyOpt);
      const vl = await criticUpdate(critic, sub, { valuesOld: pick(est.valuesOld), returns: pick(est.returns) }, cfg.valueClip, run.criticOpt);
      t.policyLoss += pl.loss;
      t.valueLoss += vl.loss;
      t.clipFrac += pl.clipFraction;
      t.approxKl += pl.approxKl;
      t.vClipFrac += vl.clipFraction;
      t.gradNorm += ps.gradNorm;
      t.updates++;
    }
  }
  return t;
}

/** The step's logged metrics (PpoStepMetrics: the job's progress, the run's series, the Prometheus gauges). */
function stepMetrics(
  run: PpoRun,
  step: number,
  s: { rollouts: Rollout[]; scores: number[]; estimate: AdvantageEstimate; update: UpdateTotals; klCoef: number },
  time: { timeRollout: number; timeScore: number; timeUpdate: number; timeSync: number },
): PpoStepMetrics {
  const { rollouts, update: u } = s;
  const rewardStats = meanStd(s.scores);
  return {
    step: step + 1,
    steps: run.cfg.steps,
    reward_mean: rewardStats.mean,
    reward_std: rewardStats.std,
    kl: meanStd(s.estimate.seqKl).mean,
    approx_kl: u.approxKl / u.updates,
    clip_fraction: u.clipFrac / u.updates,
    entropy: s.estimate.entropy,
    policy_loss: u.policyLoss / u.updates,
    value_loss: u.valueLoss / u.updates,
    value_clip_fraction: u.vClipFrac / u.updates,
    response_length: meanStd(rollouts.map((r) => r.response.length)).mean,
    stop_fraction: rollouts.filter((r) => r.finish === 'stop').length / rollouts.length,
    kl_coef: s.klCoef,
    grad_norm: u.gradNorm / u.updates,
    time_rollout_s: time.timeRollout,
    time_score_s: time.timeScore,
    time_update_s: time.timeUpdate,
    time_sync_s: time.timeSync,
  };
}

/**
 * Writes the run's resume points: the policy's training state is removed first and written last (after the critic's),
 * so a kill mid-write leaves no checkpoint rather than a mixed one.
 */
async function savePpoState(run: PpoRun, models: PpoModels, prompts: EpochOrder, totals: PpoTotals): Promise<void> {
  const policyDir = path.join(run.stateDir, 'policy');
  await rm(path.join(policyDir, TRAINING_STATE_FILE), { force: true });
  const position = prompts.position();
  await saveResumePoint(models.critic, {
    outDir: path.join(run.stateDir, 'critic'),
    modelDir: run.criticDir ?? run.policyDir,
    spec: run.criticSpec,
    state: { ...position, optimizer: { ...run.criticOpt } },
  });
  await saveResumePoint(models.policy, {
    outDir: policyDir,
    modelDir: run.policyDir,
    spec: run.ck.spec,
    state: { ...position, optimizer: { ...run.policyOpt }, extra: { ...run.key, totals } },
  });
}
