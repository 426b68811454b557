/**
 * The PPO trainer: rollouts from the current policy (rollout.ts), reward scores from a scorer the caller provides
 * (the reward service over NATS in the trainer job, a local reward model in tests), a per-token KL penalty against
 * a frozen reference, a critic (value head), GAE, whitened advantages, the clipped policy and value losses
 * (ppo.math.ts), a fixed or adaptive KL coefficient, AdamW with clipping, several epochs over mini-batches; per-step
 * metrics and timings; resumable checkpoints (weights and AdamW state of policy and critic, step, data position,
 * KL coefficient, policy version). Not the BullMQ job (apps/trainer/src/ppo.processor.ts).
 *
 * Hyper-parameters and their defaults: ppoConfigSchema in libs/contracts (rl-jobs.schemas.ts).
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { ppoConfigSchema, type PpoConfigInput, type PpoStepMetrics } from '@flywheel/contracts';
import {
  createTrainableModel,
  freeTrainableModel,
  getOptimizerState,
  getWeights,
  optimizerStep,
  policyBackward,
  policyForward,
  setOptimizerState,
  zeroGrad,
  DEFAULT_OPTIMIZER,
  type OptimizerConfig,
  type TrainableModelHandle,
  type WeightMap,
} from '@flywheel/kernels';
import { loadCheckpoint, ModelLoadError, readTrainingState, writeHfCheckpoint, writeTrainingState, Xoshiro128, type RewardChatMessage } from '@flywheel/model';
import { clippedPolicyLoss, clippedValueLoss, gae, KlController, klShapedRewards, meanStd, sequenceKl, whiten } from './ppo.math';
import { createRolloutEngine, gather, packActions, scatter, type Rollout } from './rollout';

export type PpoScorer = (pairs: { prompt: RewardChatMessage[]; response: string }[]) => Promise<number[]>;

export interface PpoOptions {
  policyDir: string;
  /** Critic initialisation: a reward-model checkpoint (as OpenRLHF); default the policy with a zero value head. */
  criticDir?: string | null;
  prompts: readonly (readonly RewardChatMessage[])[];
  score: PpoScorer;
  outDir: string;
  config?: PpoConfigInput;
  threads?: number;
  /** Written into the resume state and the result (lineage). */
  policyVersion?: string | null;
  resume?: boolean;
  onStep?: (m: PpoStepMetrics) => void | Promise<void>;
  onCheckpoint?: (step: number) => void | Promise<void>;
  onResume?: (step: number) => void | Promise<void>;
  /** Polled after each step: true checkpoints and throws PpoStoppedError. */
  shouldStop?: () => boolean;
}

export interface PpoResult {
  steps: number;
  resumedFromStep: number;
  history: PpoStepMetrics[];
  klCoef: number;
  outDir: string;
  seconds: number;
}

export class PpoStoppedError extends Error {
  constructor(readonly step: number) {
    super(`ppo stopped at step ${step} (checkpoint written)`);
    this.name = 'PpoStoppedError';
  }
}

const STATE_DIR = 'ppo-state';
const STATE_FILE = 'ppo_state.json';
const stateSchema = z.strictObject({
  format: z.literal('flywheel-ppo-state/1'),
  step: z.int().nonnegative(),
  epoch: z.int().nonnegative(),
  index: z.int().nonnegative(),
  klCoef: z.number(),
  policyVersion: z.string().nullable(),
  key: z.record(z.string(), z.unknown()),
  history: z.array(z.record(z.string(), z.number())),
});

/** The prompt order of data epoch `epoch`: a permutation seeded by (seed, epoch), so resume needs only the position. */
function epochOrder(n: number, seed: number, epoch: number): number[] {
  const rng = new Xoshiro128(seed, epoch + 1);
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.nextFloat() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/** Sampling seed of rollout i at step s: distinct per (seed, step, i), fixed across runs. */
const rolloutSeed = (seed: number, step: number, i: number): number => (seed * 1_000_003 + step * 4099 + i) % 2 ** 47;

const seconds = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e9;

export async function runPpo(o: PpoOptions): Promise<PpoResult> {
  const cfg = ppoConfigSchema.parse(o.config ?? {});
  if (o.prompts.length === 0) throw new Error('ppo needs at least one prompt');
  const policyDir = path.resolve(o.policyDir);
  const outDir = path.resolve(o.outDir);
  const stateDir = path.join(outDir, STATE_DIR);
  const ck = await loadCheckpoint(policyDir);
  if (ck.format !== 'hf') throw new ModelLoadError('ppo needs a Hugging Face directory (GGUF is not trainable here)', policyDir);
  if (ck.numLabels !== null && ck.numLabels !== undefined) throw new ModelLoadError('ppo needs a causal LM policy, not a sequence classifier', policyDir);
  const criticCk = o.criticDir ? await loadCheckpoint(path.resolve(o.criticDir)) : null;
  if (criticCk && criticCk.numLabels !== 1) throw new ModelLoadError('the critic must start from a reward model (num_labels 1)', path.resolve(o.criticDir!));

  const promptIds = o.prompts.map((m) => ck.tokenizer.applyChatTemplate(m, { addGenerationPrompt: true }));
  const maxModelLen = Math.min(ck.spec.maxPositionEmbeddings, Math.max(...promptIds.map((p) => p.length)) + cfg.maxNewTokens);
  if (promptIds.some((p) => p.length + 1 > maxModelLen)) throw new Error(`a prompt leaves no room for a response within ${ck.spec.maxPositionEmbeddings} tokens`);

  const key = { policy: policyDir, critic: criticCk ? path.resolve(o.criticDir!) : null, prompts: o.prompts.length, ...cfg, steps: undefined, checkpointEvery: undefined };
  const saved = o.resume ? await readResumeState(stateDir, key) : null;

  const policyOpt: OptimizerConfig = { ...DEFAULT_OPTIMIZER, lr: cfg.lr, weightDecay: 0, maxGradNorm: cfg.maxGradNorm, warmupSteps: 0, totalSteps: 0 };
  const criticOpt: OptimizerConfig = { ...policyOpt, lr: cfg.criticLr };
  const criticInit = (): WeightMap => {
    if (criticCk) return criticCk.weights;
    const w = new Map(ck.weights);
    w.set('score.weight', new Float32Array(ck.spec.hiddenSize)); // a zero value head: V = 0 until trained
    return w;
  };
  const policyWeights = saved ? (await loadCheckpoint(path.join(stateDir, 'policy'))).weights : ck.weights;
  const criticWeights = saved ? (await loadCheckpoint(path.join(stateDir, 'critic'))).weights : criticInit();
  const criticSpec = criticCk ? criticCk.spec : ck.spec;

  const policy = createTrainableModel(ck.spec, policyWeights, { threads: o.threads });
  const reference = createTrainableModel(ck.spec, ck.weights, { threads: o.threads });
  let critic: TrainableModelHandle | null = null;
  const started = process.hrtime.bigint();
  try {
    critic = createTrainableModel(criticSpec, criticWeights, { threads: o.threads, numLabels: 1 });
    const kl = new KlController(saved?.klCoef ?? cfg.klCoef, cfg.klTarget === null ? null : { target: cfg.klTarget, horizon: cfg.klHorizon });
    let epoch = saved?.epoch ?? 0;
    let index = saved?.index ?? 0;
    let order = epochOrder(o.prompts.length, cfg.seed, epoch);
    const history: PpoStepMetrics[] = saved ? (saved.history as unknown as PpoStepMetrics[]) : [];
    const start = saved?.step ?? 0;
    if (saved) {
      for (const [name, model] of [['policy', policy], ['critic', critic]] as const) {
        const s = await readTrainingState(path.join(stateDir, name));
        setOptimizerState(model, { step: s.step, m: s.m, v: s.v });
      }
      await o.onResume?.(start);
    }

    const save = async (step: number): Promise<void> => {
      await rm(path.join(stateDir, STATE_FILE), { force: true }); // the state file marks a complete checkpoint
      const baseConfig = JSON.parse(readFileSync(path.join(policyDir, 'config.json'), 'utf8')) as Record<string, unknown>;
      await writeHfCheckpoint(path.join(stateDir, 'policy'), { spec: ck.spec, weights: getWeights(policy), baseConfig, tokenizerDir: policyDir });
      await writeHfCheckpoint(path.join(stateDir, 'critic'), { spec: criticSpec, weights: getWeights(critic!), scoreLabels: 1, baseConfig, tokenizerDir: policyDir });
      for (const [name, model, opt] of [['policy', policy, policyOpt], ['critic', critic!, criticOpt]] as const) {
        const s = getOptimizerState(model);
        await writeTrainingState(path.join(stateDir, name), { step: s.step, m: s.m, v: s.v, rng: [cfg.seed, step], data: { epoch, index }, optimizer: { ...opt } });
      }
      const json: z.infer<typeof stateSchema> = {
        format: 'flywheel-ppo-state/1',
        step,
        epoch,
        index,
        klCoef: kl.coef,
        policyVersion: o.policyVersion ?? null,
        key: JSON.parse(JSON.stringify(key)) as Record<string, unknown>,
        history: history as unknown as Record<string, number>[],
      };
      await writeFile(path.join(stateDir, STATE_FILE), JSON.stringify(json) + '\n');
    };

    for (let step = start; step < cfg.steps; step++) {
      // ---- pick prompts (data position survives a resume)
      const picks: number[] = [];
      while (picks.length < cfg.rolloutBatch) {
        if (index >= order.length) {
          epoch++;
          index = 0;
          order = epochOrder(o.prompts.length, cfg.seed, epoch);
        }
        picks.push(order[index++]);
      }

      // ---- weight sync + rollouts
      let t0 = process.hrtime.bigint();
      const engine = createRolloutEngine(ck, getWeights(policy), { maxSeqs: Math.min(64, cfg.rolloutBatch), maxModelLen, threads: o.threads });
      const timeSync = seconds(t0);
      t0 = process.hrtime.bigint();
      let rollouts: Rollout[];
      try {
        rollouts = await engine.generate(
          picks.map((p) => promptIds[p]),
          { maxNewTokens: cfg.maxNewTokens, stop: cfg.stop, seeds: picks.map((_, i) => rolloutSeed(cfg.seed, step, i)) },
        );
      } finally {
        await engine.close();
      }
      // A response needs one action to learn from; an immediate stop still has its stop token.
      const timeRollout = seconds(t0);

      // ---- scores
      t0 = process.hrtime.bigint();
      const scores = await o.score(rollouts.map((r, i) => ({ prompt: [...o.prompts[picks[i]]], response: r.text })));
      if (scores.length !== rollouts.length || scores.some((s) => !Number.isFinite(s))) throw new Error(`the scorer returned ${scores.length} scores for ${rollouts.length} responses (or a non-finite one)`);
      const timeScore = seconds(t0);

      // ---- old log-probs, reference log-probs, values; rewards and advantages
      t0 = process.hrtime.bigint();
      const all = packActions(rollouts);
      const n = all.batch.B * all.batch.T;
      const oldF = await policyForward(policy, all.batch, { targets: all.targets, sel: all.sel });
      const logpOld = gather(oldF.logp, all.slots);
      const entropy = meanStd(gather(oldF.entropy, all.slots)).mean;
      const logpRef = gather((await policyForward(reference, all.batch, { targets: all.targets, sel: all.sel })).logp, all.slots);
      const valuesOld = gather((await policyForward(critic, all.batch, { targets: new Int32Array(n), sel: new Int32Array(n), values: true })).values!, all.slots);
      const seqKl = sequenceKl(logpOld, logpRef, all.offsets);
      const rewards = klShapedRewards(scores, logpOld, logpRef, all.offsets, kl.coef);
      const { advantages, returns } = gae(rewards, valuesOld, all.offsets, cfg.gamma, cfg.lambda);
      const adv = whiten(advantages);

      // ---- PPO epochs over mini-batches of sequences
      let policyLoss = 0, valueLoss = 0, clipFrac = 0, approxKl = 0, vClipFrac = 0, gradNorm = 0, updates = 0;
      for (let e = 0; e < cfg.ppoEpochs; e++) {
        const rows = epochOrder(rollouts.length, cfg.seed + 7919 * (step + 1), e);
        for (let m0 = 0; m0 < rows.length; m0 += cfg.miniBatch) {
          const mb = rows.slice(m0, m0 + cfg.miniBatch);
          const sub = packActions(mb.map((r) => rollouts[r]));
          // Per-action arrays of this mini-batch, in its own action order.
          const pick = (a: Float64Array): Float64Array => {
            const out = new Float64Array(sub.slots.length);
            let k = 0;
            for (const r of mb) for (let i = all.offsets[r]; i < all.offsets[r + 1]; i++) out[k++] = a[i];
            return out;
          };
          const subN = sub.batch.B * sub.batch.T;
          zeroGrad(policy);
          const f = await policyForward(policy, sub.batch, { targets: sub.targets, sel: sub.sel });
          const pl = clippedPolicyLoss(gather(f.logp, sub.slots), pick(logpOld), pick(adv), cfg.clip, cfg.logRatioClamp);
          await policyBackward(policy, f.pass, { dlogp: scatter(pl.dlogp, sub.slots, subN) });
          const ps = await optimizerStep(policy, policyOpt);
          zeroGrad(critic);
          const cf = await policyForward(critic, sub.batch, { targets: new Int32Array(subN), sel: new Int32Array(subN), values: true });
          const vl = clippedValueLoss(gather(cf.values!, sub.slots), pick(valuesOld), pick(returns), cfg.valueClip);
          await policyBackward(critic, cf.pass, { dvalues: scatter(vl.dvalues, sub.slots, subN) });
          await optimizerStep(critic, criticOpt);
          policyLoss += pl.loss;
          valueLoss += vl.loss;
          clipFrac += pl.clipFraction;
          approxKl += pl.approxKl;
          vClipFrac += vl.clipFraction;
          gradNorm += ps.gradNorm;
          updates++;
        }
      }
      const timeUpdate = seconds(t0);

      const rewardStats = meanStd(scores);
      const klMean = meanStd(seqKl).mean;
      const metrics: PpoStepMetrics = {
        step: step + 1,
        steps: cfg.steps,
        reward_mean: rewardStats.mean,
        reward_std: rewardStats.std,
        kl: klMean,
        approx_kl: approxKl / updates,
        clip_fraction: clipFrac / updates,
        entropy,
        policy_loss: policyLoss / updates,
        value_loss: valueLoss / updates,
        value_clip_fraction: vClipFrac / updates,
        response_length: meanStd(rollouts.map((r) => r.response.length)).mean,
        stop_fraction: rollouts.filter((r) => r.finish === 'stop').length / rollouts.length,
        kl_coef: kl.coef,
        grad_norm: gradNorm / updates,
        time_rollout_s: timeRollout,
        time_score_s: timeScore,
        time_update_s: timeUpdate,
        time_sync_s: timeSync,
      };
      kl.update(klMean, rollouts.length);
      history.push(metrics);
      await o.onStep?.(metrics);

      const last = step + 1 === cfg.steps;
      const stopping = !last && (o.shouldStop?.() ?? false);
      if (!last && (stopping || (cfg.checkpointEvery > 0 && (step + 1) % cfg.checkpointEvery === 0))) {
        await save(step + 1);
        await o.onCheckpoint?.(step + 1);
      }
      if (stopping) throw new PpoStoppedError(step + 1);
    }

    // ---- the trained policy: a plain HF causal-LM directory
    const baseConfig = JSON.parse(readFileSync(path.join(policyDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    await writeHfCheckpoint(outDir, { spec: ck.spec, weights: getWeights(policy), baseConfig, tokenizerDir: policyDir });
    await save(cfg.steps);
    return { steps: cfg.steps, resumedFromStep: start, history, klCoef: kl.coef, outDir, seconds: seconds(started) };
  } finally {
    freeTrainableModel(policy);
    freeTrainableModel(reference);
    if (critic) freeTrainableModel(critic);
  }
}

/** The resume state under stateDir when it exists and was written for the same run key; null otherwise. */
async function readResumeState(stateDir: string, key: Record<string, unknown>) {
  const file = path.join(stateDir, STATE_FILE);
  if (!existsSync(file)) return null;
  const parsed = stateSchema.safeParse(JSON.parse(await readFile(file, 'utf8')));
  if (!parsed.success) throw new ModelLoadError(`unreadable PPO state (${parsed.error.issues[0].message})`, file);
  const want = JSON.parse(JSON.stringify(key)) as Record<string, unknown>;
  for (const [k, v] of Object.entries(want)) {
    if (JSON.stringify(parsed.data.key[k]) !== JSON.stringify(v)) {
      throw new Error(`${stateDir}: the saved PPO run differs in ${k} (${JSON.stringify(parsed.data.key[k])} vs ${JSON.stringify(v)}); use a new out dir`);
    }
  }
  return parsed.data;
}

