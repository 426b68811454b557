/**
 * The BullMQ worker of the `reward-train` queue: parses the job data, reads the preference pairs (a store export or
 * a JSONL file), runs runRewardTraining (libs/model) into `<state dir>/checkpoints/<version>` (outName, else
 * `rm-<job id>-<creation time>`), reports step metrics as job progress, registers the result as a candidate reward
 * version whose metrics carry the held-out accuracy, and publishes it to the checkpoint object store (parent: the
 * reward version active then, as the loop records it), so it can be promoted from the admin API. Runs are short,
 * so a job whose trainer died starts over. Not the training loop itself.
 */
import path from 'node:path';
import { Inject, Injectable } from '@nestjs/common';
import { type Job } from 'bullmq';
import { QUEUES, rewardTrainJobDataSchema, type RewardTrainJobResult, type RewardTrainProgress } from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { MeshConnection, readActive } from '@flywheel/mesh';
import { runRewardTraining } from '@flywheel/model';
import { registerAndPublish } from './checkpoint.publisher';
import { candidateOf, jobVersionId, parseJobData, QueueProcessor } from './queue.processor';
import { RunRecorder } from './run.recorder';
import { TRAINER_CONFIG } from './trainer.queues';
import { TrainerStore } from './trainer.store';

/** What process() uses of a BullMQ job (a plain object in tests). */
export type RewardTrainJob = Pick<Job, 'id' | 'data' | 'updateProgress' | 'timestamp'>;

const finiteOrNull = (x: number): number | null => (Number.isFinite(x) ? x : null);

@Injectable()
export class RewardTrainProcessor extends QueueProcessor<RewardTrainJobResult> {
  constructor(
    @Inject(TRAINER_CONFIG) config: TrainerConfig,
    private readonly store: TrainerStore,
    private readonly mesh: MeshConnection,
  ) {
    super(config, QUEUES.rewardTrain);
  }

  async process(job: RewardTrainJob): Promise<RewardTrainJobResult> {
    const data = parseJobData(rewardTrainJobDataSchema, job.data, QUEUES.rewardTrain);
    const jobId = job.id ?? 'unknown';
    const id = jobVersionId('rm', job, data.outName);
    const outDir = path.resolve(this.config.stateDir, 'checkpoints', id);
    const startedAt = new Date();
    const text = await this.store.trainingText(data.data, 'preference');
    const source = data.data.kind === 'export' ? `export ${data.data.exportId}` : path.resolve(data.data.path);
    const every = Math.max(1, Math.floor(data.steps / 20));
    this.logger.log(`job ${jobId}: reward model from ${data.modelDir} on ${source}, ${data.steps} steps, lr ${data.lr} → ${outDir}`);

    const exportIds = data.data.kind === 'export' ? [data.data.exportId] : [];
    const recorder = new RunRecorder(this.store, id);
    await recorder.start('reward-train', { exportId: exportIds[0] ?? null, config: { ...data, jobId } });
    const r = await recorder.track(() =>
      runRewardTraining({
        modelDir: data.modelDir,
        data: { text, source },
        outDir,
        steps: data.steps,
        lr: data.lr,
        batchSize: data.batchSize,
        seqLen: data.seqLen,
        heldout: data.heldout,
        seed: data.seed,
        threads: this.config.trainer.threads || undefined,
        onProgress: async (p) => {
          const progress: RewardTrainProgress = p;
          await job.updateProgress(progress);
          await recorder.step(p.step, p);
          if (p.step % every === 0 || p.step === p.steps) {
            this.logger.log(`job ${jobId}: step ${p.step}/${p.steps} loss ${p.loss.toFixed(4)} acc ${p.accuracy.toFixed(2)} grad norm ${p.gradNorm.toFixed(3)}`);
          }
        },
      }),
    );

    const metrics = {
      heldout_accuracy: finiteOrNull(r.heldoutAccuracy),
      heldout_accuracy_before: finiteOrNull(r.heldoutAccuracyBefore),
      loss_first: r.lossFirst,
      loss_last: r.lossLast,
      pairs: r.pairs,
      heldout_pairs: r.heldoutPairs,
      steps: r.steps,
      base_model: path.resolve(data.modelDir),
    };
    const parent = (await readActive(await this.mesh.connected, 'reward'))?.version ?? null;
    await registerAndPublish(
      this.store,
      this.mesh,
      candidateOf({ id, role: 'reward', kind: 'reward-train', source: data.data, config: { ...data, jobId }, startedAt, checkpoint: outDir, metrics }),
      { parent, exports: exportIds },
    );
    this.logger.log(`job ${jobId}: held-out accuracy ${metrics.heldout_accuracy ?? '-'}; published candidate reward version ${id} (parent ${parent ?? 'none'})`);
    return {
      versionId: id,
      checkpointDir: outDir,
      pairs: r.pairs,
      heldoutPairs: r.heldoutPairs,
      heldoutAccuracy: metrics.heldout_accuracy,
      heldoutAccuracyBefore: metrics.heldout_accuracy_before,
      lossFirst: r.lossFirst,
      lossLast: r.lossLast,
      registered: true,
    };
  }
}
