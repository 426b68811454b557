/**
 * The BullMQ worker of the `loop` queue: one tracked pass of the RL loop. It makes sure a policy version is
 * active (publishing and promoting the configured base the first time), then runs its stages as jobs on their own
 * queues and waits for each: moderation-train on the reviewers' moderation labels when the run carries them (that
 * job promotes its own candidate when it beats the active classifier) → an SFT warm start on approved answers and
 * corrections when the run carries them (the policy stage then starts from, and is held to, its output) →
 * reward-train on the pairs (with `independentRm`: on one side of their split by prompt, and a second, independent
 * reward model on the other side, published but never made active, which the eval scores the candidate with too) →
 * publish the reward model and make it active (reward replicas hot-swap) unless its held-out accuracy is too low → ppo (or grpo: GRPO, RLOO, REINFORCE++, by the run's
 * `algorithm`) from the active policy, scored by that reward
 * model (or `external`: a hand-off folder for a cluster trainer and a wait for the checkpoint it publishes under the
 * run's id, external.stage.ts; the run's SFT data then goes into the hand-off instead of an in-process warm start)
 * → eval of the candidate against the active policy, which promotes it when it passes the gate. Stage jobs
 * have ids derived from the loop's, so a loop job run again after a crash re-attaches to the stages already
 * queued or done instead of repeating them. Every stage is a child run of the loop run in the store.
 */
import path from 'node:path';
import { Inject, Injectable } from '@nestjs/common';
import { QueueEvents, UnrecoverableError, type Job } from 'bullmq';
import IORedis from 'ioredis';
import {
  evalJobResultSchema,
  LOOP_STAGES,
  loopJobDataSchema,
  moderationTrainJobResultSchema,
  sftJobResultSchema,
  type SftJobDataInput,
  type ModerationTrainJobDataInput,
  ppoJobResultSchema,
  grpoJobResultSchema,
  type GrpoJobDataInput,
  type PpoJobResult,
  QUEUES,
  rewardTrainJobResultSchema,
  type EvalJobDataInput,
  type LoopJobData,
  type LoopJobResult,
  type PpoJobDataInput,
  type QueueName,
  type RewardTrainJobDataInput,
  type TrainingRunKind,
} from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { fetchCheckpoint, MeshConnection, promoteVersion, readActive } from '@flywheel/mesh';
import { createTrainingRun, findTrainingRun, updateTrainingRun } from '@flywheel/store';
import type { z } from 'zod';
import { publishVersion } from './checkpoint.publisher';
import { ExternalStage, handoffDirOf } from './external.stage';
import { RunRecorder } from './run.recorder';
import { QueueProcessor, sourceOf, type QueueJob } from './queue.processor';
import { TRAINER_CONFIG, TrainerQueues } from './trainer.queues';
import { TrainerStore } from './trainer.store';

/**
 * The loop run's id for a loop job: its job id plus its creation time, because job ids restart when Redis is
 * emptied while run ids and the versions named after them (`<run>-ppo`) live on in the store and object store.
 */
export const loopRunId = (job: Pick<Job, 'id' | 'timestamp'>): string => `loop-${job.id ?? '?'}-${job.timestamp.toString(36)}`;

/** The stages that run as jobs of their own: the queue, the job id (derived from the loop run's), the stage run's id. */
const STAGE_JOBS = {
  sft: { queue: QUEUES.sft, kind: 'sft', jobId: (run: string) => `${run}-sft`, runId: (run: string) => `${run}-sft` },
  'moderation-train': { queue: QUEUES.moderationTrain, kind: 'moderation-train', jobId: (run: string) => `${run}-mod`, runId: (run: string) => `mod-${run}-mod` },
  'reward-train': { queue: QUEUES.rewardTrain, kind: 'reward-train', jobId: (run: string) => `${run}-rm`, runId: (run: string) => `rm-${run}-rm` },
  ppo: { queue: QUEUES.ppo, kind: 'ppo', jobId: (run: string) => `${run}-ppo`, runId: (run: string) => `${run}-ppo` },
  grpo: { queue: QUEUES.grpo, kind: 'grpo', jobId: (run: string) => `${run}-grpo`, runId: (run: string) => `${run}-grpo` },
  eval: { queue: QUEUES.eval, kind: 'eval', jobId: (run: string) => `${run}-eval`, runId: (run: string) => `eval-${run}-eval` },
} as const satisfies Record<string, { queue: QueueName; kind: TrainingRunKind; jobId: (run: string) => string; runId: (run: string) => string }>;
export type LoopJobStage = keyof typeof STAGE_JOBS;
type LoopStage = (typeof LOOP_STAGES)[number];

/** Where a loop run's stage runs as a job (queue and job id), or null for a stage the loop does itself. */
export function stageJobOf(loopRun: string, stage: string): { queue: QueueName; jobId: string } | null {
  if (!isJobStage(stage)) return null;
  const s = STAGE_JOBS[stage];
  return { queue: s.queue, jobId: s.jobId(loopRun) };
}

const isJobStage = (stage: string): stage is LoopJobStage => Object.hasOwn(STAGE_JOBS, stage);

/** A stage job may run for hours; the loop waits as long as the stage's own timeout allows (none). */
const STAGE_WAIT_MS = 24 * 3_600_000;

@Injectable()
export class LoopProcessor extends QueueProcessor<LoopJobData, LoopJobResult> {
  private readonly events = new Map<QueueName, QueueEvents>();
  private readonly external: ExternalStage;

  constructor(
    @Inject(TRAINER_CONFIG) config: TrainerConfig,
    private readonly store: TrainerStore,
    private readonly mesh: MeshConnection,
    private readonly queues: TrainerQueues,
  ) {
    super(config, QUEUES.loop, loopJobDataSchema, true);
    this.external = new ExternalStage(config, store, mesh);
  }

  override onApplicationBootstrap(): void {
    for (const name of Object.values(STAGE_JOBS).map((s) => s.queue)) {
      const connection = new IORedis(this.config.redis.url, { maxRetriesPerRequest: null });
      connection.on('error', () => undefined); // reported once below, by the QueueEvents that owns it
      const ev = new QueueEvents(name, { connection, prefix: this.config.trainer.queuePrefix });
      ev.on('error', (err) => this.logger.warn(`queue events ${name}: ${err.message}`));
      this.events.set(name, ev);
    }
    super.onApplicationBootstrap();
  }

  override async onApplicationShutdown(): Promise<void> {
    await Promise.all([...this.events.values()].map((e) => e.close().catch(() => undefined)));
    await super.onApplicationShutdown();
  }

  /** Enqueues a stage (idempotent per job id) and waits for its result, parsed with the stage's result schema. */
  private async stage<S extends z.ZodType>(queue: QueueName, jobId: string, data: object, result: S): Promise<z.infer<S>> {
    const q = this.queues.queues.get(queue);
    const ev = this.events.get(queue);
    if (!q || !ev) throw new Error(`no ${queue} queue`);
    const job = (await q.getJob(jobId)) ?? (await q.add(queue, data, { jobId }));
    const value: unknown = (await job.isCompleted()) ? job.returnvalue : await job.waitUntilFinished(ev, STAGE_WAIT_MS);
    return result.parse(value);
  }

  /** The active policy version and its local checkpoint; the configured base is published and promoted first when none is. */
  private async activePolicy(): Promise<{ version: string; dir: string }> {
    const nc = await this.mesh.connected;
    let active = await readActive(nc, 'policy');
    if (!active) {
      const base = this.config.loop.baseVersion;
      this.logger.log(`no active policy version: publishing ${path.resolve(this.config.loop.baseModel)} as ${base} and making it active`);
      await publishVersion(this.mesh, { version: base, role: 'policy', dir: path.resolve(this.config.loop.baseModel), parent: null, runId: null, exports: [] });
      active = await promoteVersion(nc, 'policy', base, 'trainer-loop', 'the loop adopts the base policy');
    }
    const dir = await fetchCheckpoint(nc, active.checkpoint, path.resolve(this.config.stateDir, 'checkpoints', 'cache'));
    return { version: active.version, dir };
  }

  protected async handle(job: QueueJob, data: LoopJobData): Promise<LoopJobResult> {
    const id = loopRunId(job);
    const { exportIds } = sourceOf(data.data);
    const recorder = new RunRecorder(this.store, id);
    /** The stage in progress (the job's progress and the run's `stage`), read again when the run fails. */
    const at: { stage: LoopStage } = { stage: 'prepare' };
    const setStage = async (stage: LoopStage) => {
      at.stage = stage;
      await job.updateProgress({ stage });
      await recorder.patch({ stage });
      this.logger.log(`${id}: ${stage}`);
    };
    await recorder.start('loop', { exportId: exportIds[0] ?? null, config: { ...data, jobId: job.id }, stage: 'prepare' });
    try {
      await job.updateProgress({ stage: 'prepare' });
      const base = await this.activePolicy();
      await recorder.patch({ metrics: { base_version: base.version } });

      // ---- moderation (when the run carries reviewers' moderation data): its own gate decides its promotion
      if (data.moderation) {
        await setStage('moderation-train');
        const modData: ModerationTrainJobDataInput = { data: data.moderation.data, promote: data.moderation.promote, parentRunId: id, outName: STAGE_JOBS['moderation-train'].runId(id) };
        const mod = await this.stage(QUEUES.moderationTrain, STAGE_JOBS['moderation-train'].jobId(id), modData, moderationTrainJobResultSchema);
        await recorder.patch({ metrics: { moderation_version: mod.versionId, moderation_promoted: mod.promoted, moderation_macro_f1: mod.candidate.macro_f1 } });
      }

      // ---- SFT warm start (when the run carries approved answers and corrections): the policy stage starts from,
      // and is held to, the fine-tuned model, so its KL is not spent on reaching the approved answers' format.
      let policyStart = base.dir;
      if (data.sft && data.algorithm !== 'external') {
        await setStage('sft');
        const sftId = STAGE_JOBS.sft.runId(id);
        await this.store.use((db) => createTrainingRun(db, { id: sftId, kind: 'sft', parentRunId: id, baseVersion: base.version, exportId: data.sft?.data.kind === 'export' ? data.sft.data.exportId : null, stage: 'sft' }));
        const { data: sftSource, ...sftOptions } = data.sft;
        const sftData: SftJobDataInput = { modelDir: base.dir, data: sftSource, ...sftOptions, outName: sftId };
        const sft = await this.stage(QUEUES.sft, STAGE_JOBS.sft.jobId(id), sftData, sftJobResultSchema);
        policyStart = sft.checkpointDir;
        await recorder.patch({ metrics: { sft_version: sft.versionId, sft_heldout_loss_before: sft.heldoutLossBefore, sft_heldout_loss_after: sft.heldoutLossAfter } });
      }

      // ---- reward model
      await setStage('reward-train');
      const rmJobId = STAGE_JOBS['reward-train'].jobId(id);
      const rmVersionId = STAGE_JOBS['reward-train'].runId(id); // the reward-train job's version / run id (rm-<job id>)
      await this.store.use((db) => createTrainingRun(db, { id: rmVersionId, kind: 'reward-train', parentRunId: id, baseVersion: base.version, exportId: exportIds[0] ?? null, stage: 'reward-train' }));
      const split = data.independentRm ? { share: data.independentRm.share } : null;
      const rmData: RewardTrainJobDataInput = { modelDir: base.dir, data: data.data, ...data.rewardTrain, outName: rmVersionId, promptSide: split && { side: 'train', ...split } };
      const rm = await this.stage(QUEUES.rewardTrain, rmJobId, rmData, rewardTrainJobResultSchema);
      const accuracy = rm.heldoutAccuracy;
      await recorder.patch({ metrics: { rm_version: rm.versionId, rm_heldout_accuracy: accuracy } });
      if (accuracy !== null && accuracy < data.minRewardAccuracy) {
        const why = `reward model held-out accuracy ${accuracy.toFixed(3)} < ${data.minRewardAccuracy}`;
        await recorder.patch({ status: 'succeeded', stage: 'done', metrics: { promoted: false, stopped_because: why } });
        return { loopRunId: id, rewardVersion: rm.versionId, rewardAccuracy: accuracy, candidateVersion: null, baseVersion: base.version, eval: null, promoted: false, stoppedBecause: why };
      }
      const independent = split ? await this.independentRewardModel(id, base, data, split.share, exportIds) : null;
      if (independent) {
        await recorder.patch({ metrics: { independent_rm_version: independent.versionId, independent_rm_heldout_accuracy: independent.accuracy, independent_rm_used: independent.used } });
      }
      const independentRm = independent?.used ? independent : null;
      await setStage('publish-reward');
      const nc = await this.mesh.connected;
      const previousRm = (await readActive(nc, 'reward'))?.version ?? null;
      await publishVersion(this.mesh, { version: rm.versionId, role: 'reward', dir: rm.checkpointDir, parent: previousRm, runId: rm.versionId, exports: exportIds });
      if (previousRm !== rm.versionId) await promoteVersion(nc, 'reward', rm.versionId, 'trainer-loop', `${id}: held-out accuracy ${accuracy ?? '-'}`);
      // The independent reward model is published for the eval to fetch, never made active: nothing trains against it.
      if (independentRm) await publishVersion(this.mesh, { version: independentRm.versionId, role: 'reward', dir: independentRm.checkpointDir, parent: null, runId: independentRm.versionId, exports: exportIds });

      // ---- policy optimisation: PPO with its critic, a critic-free group method (GRPO, RLOO, REINFORCE++), or a
      // trainer elsewhere (external: its eval samples as PPO's settings say)
      const gen = data.algorithm === 'ppo' || data.algorithm === 'external' ? data.ppo : data.grpo;
      const common = { modelDir: policyStart, baseVersion: base.version, rewardVersion: rm.versionId, prompts: data.data, heldout: data.heldout, parentRunId: id, exportIds, ...(data.rewards ? { rewards: data.rewards } : {}) };
      let ppo: { versionId: string; rewardFirst: number | null; rewardLast: number | null; klLast: number | null; heldoutPrompts: PpoJobResult['heldoutPrompts'] };
      if (data.algorithm === 'ppo') {
        await setStage('ppo');
        const ppoData: PpoJobDataInput = { ...common, criticDir: rm.checkpointDir, config: data.ppo, outName: STAGE_JOBS.ppo.runId(id) };
        ppo = await this.stage(QUEUES.ppo, STAGE_JOBS.ppo.jobId(id), ppoData, ppoJobResultSchema);
      } else if (data.algorithm === 'external') {
        await setStage('external');
        await recorder.patch({ metrics: { handoff_dir: handoffDirOf(this.config.stateDir, id) } });
        const ext = await this.external.run({ job, loopRunId: id, data, base, reward: { version: rm.versionId, dir: rm.checkpointDir }, exportIds, stopping: () => this.stopping });
        ppo = { versionId: ext.versionId, rewardFirst: null, rewardLast: null, klLast: null, heldoutPrompts: ext.heldoutPrompts };
      } else {
        await setStage('grpo');
        const grpoData: GrpoJobDataInput = { ...common, config: { ...data.grpo, algorithm: data.algorithm }, outName: STAGE_JOBS.grpo.runId(id) };
        ppo = await this.stage(QUEUES.grpo, STAGE_JOBS.grpo.jobId(id), grpoData, grpoJobResultSchema);
      }
      await recorder.patch({ metrics: { algorithm: data.algorithm, candidate_version: ppo.versionId, ppo_reward_first: ppo.rewardFirst, ppo_reward_last: ppo.rewardLast, ppo_kl_last: ppo.klLast } });

      // ---- eval and promotion
      await setStage('eval');
      if (ppo.heldoutPrompts.length === 0) throw new UnrecoverableError('no held-out prompts for the eval stage (set heldout > 0 and give at least two prompts)');
      const evalData: EvalJobDataInput = {
        candidateVersion: ppo.versionId,
        activeVersion: base.version,
        rewardVersion: rm.versionId,
        independentRewardVersion: independentRm?.versionId ?? null,
        prompts: ppo.heldoutPrompts,
        samples: data.eval.samples,
        maxNewTokens: gen.maxNewTokens,
        stop: gen.stop,
        seed: gen.seed,
        gate: data.eval.gate,
        promote: data.eval.promote,
        abSamples: data.eval.abSamples,
        abWait: data.eval.abWait,
        parentRunId: id,
      };
      const ev = await this.stage(QUEUES.eval, STAGE_JOBS.eval.jobId(id), evalData, evalJobResultSchema);
      const { examples, ...report } = ev.report;
      await recorder.patch({ status: 'succeeded', stage: 'done', metrics: { ...report, examples: examples.slice(0, 3), pass: ev.pass, reasons: ev.reasons, promoted: ev.promoted, ab_pairs: ev.abPairs, awaiting_ab: ev.awaitingAb } });
      return { loopRunId: id, rewardVersion: rm.versionId, rewardAccuracy: accuracy, candidateVersion: ppo.versionId, baseVersion: base.version, eval: ev, promoted: ev.promoted, stoppedBecause: null };
    } catch (err) {
      // The loop run keeps the stage it failed in; the stage's own run says so too, even when its job failed
      // before it recorded anything (bad data, a missing export).
      const error = err instanceof Error ? err.message : String(err);
      await recorder.patch({ status: 'failed', error });
      if (isJobStage(at.stage)) await this.failStageRun(id, at.stage, error);
      throw err;
    }
  }

  /**
   * A run's independent reward model: its rewardTrain settings on the held-out side of the split by prompt only, a
   * child run of the loop run (job `<run>-rm-independent`, so a loop job run again re-attaches to it). `used` is false
   * when its held-out accuracy is below minRewardAccuracy: a reward model that weak is noise, not evidence, and the
   * eval then runs without one.
   */
  private async independentRewardModel(
    loopRun: string,
    base: { version: string; dir: string },
    data: LoopJobData,
    share: number,
    exportIds: string[],
  ): Promise<{ versionId: string; checkpointDir: string; accuracy: number | null; used: boolean }> {
    const versionId = `rm-${loopRun}-rm-independent`;
    await this.store.use((db) => createTrainingRun(db, { id: versionId, kind: 'reward-train', parentRunId: loopRun, baseVersion: base.version, exportId: exportIds[0] ?? null, stage: 'reward-train' }));
    const rmData: RewardTrainJobDataInput = { modelDir: base.dir, data: data.data, ...data.rewardTrain, outName: versionId, promptSide: { side: 'heldout', share } };
    const rm = await this.stage(QUEUES.rewardTrain, `${loopRun}-rm-independent`, rmData, rewardTrainJobResultSchema);
    const used = rm.heldoutAccuracy === null || rm.heldoutAccuracy >= data.minRewardAccuracy;
    if (!used) this.logger.warn(`${loopRun}: independent reward model held-out accuracy ${rm.heldoutAccuracy?.toFixed(3)} < ${data.minRewardAccuracy}: the eval runs without it`);
    return { versionId: rm.versionId, checkpointDir: rm.checkpointDir, accuracy: rm.heldoutAccuracy, used };
  }

  /** Marks the stage's run failed with `error`, creating it when its job never did; a finished one is left as it is. */
  private async failStageRun(loopRun: string, stage: LoopJobStage, error: string): Promise<void> {
    const s = STAGE_JOBS[stage];
    const runId = s.runId(loopRun);
    try {
      await this.store.use(async (db) => {
        const run = (await findTrainingRun(db, runId)) ?? (await createTrainingRun(db, { id: runId, kind: s.kind, parentRunId: loopRun, stage }));
        if (run.status === 'queued' || run.status === 'running') await updateTrainingRun(db, runId, { status: 'failed', error });
      });
    } catch (err) {
      this.logger.warn(`${loopRun}: cannot mark the ${stage} stage run failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

}
