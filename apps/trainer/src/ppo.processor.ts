/**
 * The BullMQ worker of the `ppo` queue: reads the prompts (any export or JSONL), keeps a seeded held-out share for
 * the eval job, waits until the reward service serves the job's reward version, runs runPpo (libs/rl) with that
 * service as the scorer, and records every step (job progress, the run's metric series in the store, the
 * trainer's Prometheus gauges). The trained policy is registered as a candidate and published to the checkpoint
 * object store with its lineage (parent version, run, exports). A job restarted under the same id (its trainer
 * died or shut down) resumes from its last checkpoint. Not the PPO algorithm (libs/rl).
 */
import path from 'node:path';
import { Inject, Injectable } from '@nestjs/common';
import { UnrecoverableError, WaitingError, type Job } from 'bullmq';
import { ppoJobDataSchema, QUEUES, type PpoJobResult } from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { MeshConnection } from '@flywheel/mesh';
import { parsePrompts, PpoStoppedError, runPpo, splitPrompts, type PpoResult } from '@flywheel/rl';
import { registerAndPublish } from './checkpoint.publisher';
import { RewardClient } from './reward.client';
import { RunRecorder } from './run.recorder';
import { TrainerMetrics } from './trainer.metrics';
import { candidateOf, jobVersionId, parseJobData, QueueProcessor } from './queue.processor';
import { TRAINER_CONFIG } from './trainer.queues';
import { TrainerStore } from './trainer.store';

/** What process() uses of a BullMQ job (a plain object in tests; moveToWait only on shutdown). */
export type PpoJob = Pick<Job, 'id' | 'data' | 'updateProgress' | 'timestamp'> & Partial<Pick<Job, 'moveToWait'>>;

/** How long a job waits for the reward service to serve its reward version (a swap after promotion). */
const REWARD_WAIT_MS = 120_000;

@Injectable()
export class PpoProcessor extends QueueProcessor<PpoJobResult> {
  constructor(
    @Inject(TRAINER_CONFIG) config: TrainerConfig,
    private readonly store: TrainerStore,
    private readonly mesh: MeshConnection,
    private readonly metrics: TrainerMetrics,
  ) {
    super(config, QUEUES.ppo);
  }

  async process(job: PpoJob, token?: string): Promise<PpoJobResult> {
    const data = parseJobData(ppoJobDataSchema, job.data, QUEUES.ppo);
    const jobId = job.id ?? 'unknown';
    const id = jobVersionId('ppo', job, data.outName);
    const outDir = path.resolve(this.config.stateDir, 'checkpoints', id);
    const seed = data.config.seed ?? 1;
    let prompts;
    try {
      prompts = splitPrompts(parsePrompts(await this.store.trainingText(data.prompts, null), data.prompts.kind === 'export' ? `export ${data.prompts.exportId}` : data.prompts.path), data.heldout, seed);
    } catch (err) {
      throw err instanceof UnrecoverableError ? err : new UnrecoverableError(err instanceof Error ? err.message : String(err));
    }
    const recorder = new RunRecorder(this.store, id);
    await recorder.start('ppo', { parentRunId: data.parentRunId, baseVersion: data.baseVersion, exportId: data.prompts.kind === 'export' ? data.prompts.exportId : null, config: { ...data, jobId } });

    const reward = new RewardClient(this.mesh, data.rewardVersion);
    const rewardVersion = await reward.ready(REWARD_WAIT_MS);
    this.logger.log(`job ${jobId}: PPO of ${data.modelDir} on ${prompts.train.length} prompts (${prompts.heldout.length} held out), reward ${rewardVersion} → ${outDir}`);

    let r: PpoResult;
    try {
      r = await runPpo({
        policyDir: data.modelDir,
        criticDir: data.criticDir,
        prompts: prompts.train,
        score: (pairs) => reward.score(pairs),
        outDir,
        config: data.config,
        threads: this.config.trainer.threads || undefined,
        policyVersion: data.baseVersion,
        resume: true,
        onResume: (step) => this.logger.log(`job ${jobId}: resuming from step ${step} (${outDir})`),
        onCheckpoint: (step) => this.logger.log(`job ${jobId}: checkpoint at step ${step}`),
        onStep: async (m) => {
          this.metrics.ppoStep(m);
          await job.updateProgress(m);
          await recorder.step(m.step, m);
          this.logger.log(
            `job ${jobId}: step ${m.step}/${m.steps} reward ${m.reward_mean.toFixed(3)}±${m.reward_std.toFixed(3)} kl ${m.kl.toFixed(3)} ` +
              `(coef ${m.kl_coef.toFixed(4)}) clip ${m.clip_fraction.toFixed(3)} value loss ${m.value_loss.toFixed(4)}`,
          );
        },
        shouldStop: () => this.stopping,
      });
    } catch (err) {
      if (err instanceof PpoStoppedError && job.moveToWait) {
        await recorder.flush();
        this.logger.log(`job ${jobId}: trainer shutting down; stopped at step ${err.step}, job back in the queue`);
        await job.moveToWait(token);
        throw new WaitingError();
      }
      await recorder.patch({ status: 'failed', error: err instanceof Error ? err.message : String(err) });
      throw err;
    }

    const first = r.history[0];
    const last = r.history[r.history.length - 1];
    const metrics = {
      reward_first: first?.reward_mean ?? null,
      reward_last: last?.reward_mean ?? null,
      kl_last: last?.kl ?? null,
      kl_coef: r.klCoef,
      steps: r.steps,
      seconds: r.seconds,
      reward_version: rewardVersion,
      train_prompts: prompts.train.length,
      heldout_prompts: prompts.heldout.length,
      base_model: path.resolve(data.modelDir),
    };
    await recorder.patch({ status: 'succeeded', metrics });
    await registerAndPublish(
      this.store,
      this.mesh,
      candidateOf({ id, role: 'policy', kind: 'ppo', source: data.prompts, config: { ...data, jobId }, startedAt: new Date(Date.now() - r.seconds * 1000), checkpoint: outDir, metrics, baseVersion: data.baseVersion }),
      { parent: data.baseVersion, exports: data.exportIds },
    );
    this.logger.log(`job ${jobId}: reward ${metrics.reward_first?.toFixed(3)} → ${metrics.reward_last?.toFixed(3)}, KL ${metrics.kl_last?.toFixed(3)}; published candidate policy ${id}`);
    return {
      versionId: id,
      trainingRunId: id,
      checkpointDir: outDir,
      steps: r.steps,
      resumedFromStep: r.resumedFromStep,
      rewardFirst: metrics.reward_first,
      rewardLast: metrics.reward_last,
      klLast: metrics.kl_last,
      heldoutPrompts: prompts.heldout,
    };
  }
}
