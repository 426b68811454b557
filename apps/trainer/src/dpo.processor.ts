/**
 * The BullMQ worker of the `dpo` queue: parses the job data, reads the preference pairs (a store export or a JSONL
 * file), runs runDpoTraining (libs/rl) into `<state dir>/checkpoints/<version>` (outName, else
 * `dpo-<job id>-<creation time>`) with a checkpoint every N steps, reports step metrics as job progress, registers
 * the result as a candidate policy version whose metrics carry the held-out implied-reward accuracy and margin, and
 * publishes it to the checkpoint object store with its lineage (the published version it started from, run, export),
 * so it can be promoted from the admin UI. A job that runs again under the same id (its trainer died) resumes from
 * its last checkpoint. Not the training loop itself.
 */
import path from 'node:path';
import { Inject, Injectable } from '@nestjs/common';
import { type Job } from 'bullmq';
import { dpoJobDataSchema, QUEUES, type DpoJobProgress, type DpoJobResult } from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { MeshConnection } from '@flywheel/mesh';
import { runDpoTraining } from '@flywheel/rl';
import { publishedVersionOf, registerAndPublish } from './checkpoint.publisher';
import { candidateOf, jobVersionId, parseJobData, QueueProcessor } from './queue.processor';
import { RunRecorder } from './run.recorder';
import { TRAINER_CONFIG } from './trainer.queues';
import { TrainerStore } from './trainer.store';

/** What process() uses of a BullMQ job (a plain object in tests). */
export type DpoJob = Pick<Job, 'id' | 'data' | 'updateProgress' | 'timestamp'>;

const finiteOrNull = (x: number): number | null => (Number.isFinite(x) ? x : null);

@Injectable()
export class DpoProcessor extends QueueProcessor<DpoJobResult> {
  constructor(
    @Inject(TRAINER_CONFIG) config: TrainerConfig,
    private readonly store: TrainerStore,
    private readonly mesh: MeshConnection,
  ) {
    super(config, QUEUES.dpo);
  }

  async process(job: DpoJob): Promise<DpoJobResult> {
    const data = parseJobData(dpoJobDataSchema, job.data, QUEUES.dpo);
    const jobId = job.id ?? 'unknown';
    const id = jobVersionId('dpo', job, data.outName);
    const outDir = path.resolve(this.config.stateDir, 'checkpoints', id);
    const startedAt = new Date();
    const text = await this.store.trainingText(data.data, 'preference');
    const source = data.data.kind === 'export' ? `export ${data.data.exportId}` : path.resolve(data.data.path);
    const every = Math.max(1, Math.floor(data.steps / 20));
    this.logger.log(`job ${jobId}: DPO of ${data.modelDir} on ${source}, ${data.steps} steps, lr ${data.lr}, beta ${data.beta} → ${outDir}`);

    const exportIds = data.data.kind === 'export' ? [data.data.exportId] : [];
    const baseVersion = await publishedVersionOf(this.mesh, 'policy', data.modelDir);
    const recorder = new RunRecorder(this.store, id);
    await recorder.start('dpo', { baseVersion, exportId: exportIds[0] ?? null, config: { ...data, jobId } });
    const r = await recorder.track(() =>
      runDpoTraining({
        modelDir: data.modelDir,
        data: { text, source },
        outDir,
        steps: data.steps,
        lr: data.lr,
        beta: data.beta,
        labelSmoothing: data.labelSmoothing,
        batchSize: data.batchSize,
        seqLen: data.seqLen,
        heldout: data.heldout,
        seed: data.seed,
        threads: this.config.trainer.threads || undefined,
        checkpointEvery: data.checkpointEvery,
        resume: true,
        onResume: (step) => this.logger.log(`job ${jobId}: resuming from step ${step} (${outDir})`),
        onProgress: async (p) => {
          const progress: DpoJobProgress = p;
          await job.updateProgress(progress);
          await recorder.step(p.step, p);
          if (p.step % every === 0 || p.step === p.steps) {
            this.logger.log(
              `job ${jobId}: step ${p.step}/${p.steps} loss ${p.loss.toFixed(4)} acc ${p.accuracy.toFixed(2)} ` +
                `margin ${p.margin.toFixed(4)} grad norm ${p.gradNorm.toFixed(3)}`,
            );
          }
        },
      }),
    );

    const metrics = {
      heldout_accuracy: finiteOrNull(r.heldoutAccuracy),
      heldout_accuracy_before: finiteOrNull(r.heldoutAccuracyBefore),
      heldout_margin_after: finiteOrNull(r.heldoutMarginAfter),
      heldout_margin_before: finiteOrNull(r.heldoutMarginBefore),
      loss_first: finiteOrNull(r.lossFirst),
      loss_last: finiteOrNull(r.lossLast),
      pairs: r.pairs,
      heldout_pairs: r.heldoutPairs,
      steps: r.steps,
      beta: data.beta,
      base_model: path.resolve(data.modelDir),
    };
    await registerAndPublish(
      this.store,
      this.mesh,
      candidateOf({ id, role: 'policy', kind: 'dpo', source: data.data, config: { ...data, jobId }, startedAt, checkpoint: outDir, metrics, baseVersion }),
      { parent: baseVersion, exports: exportIds },
    );
    this.logger.log(
      `job ${jobId}: held-out accuracy ${metrics.heldout_accuracy_before ?? '-'} → ${metrics.heldout_accuracy ?? '-'}; ` +
        `published candidate policy version ${id} (parent ${baseVersion ?? 'none'})`,
    );
    return {
      versionId: id,
      trainingRunId: id,
      checkpointDir: outDir,
      pairs: r.pairs,
      heldoutPairs: r.heldoutPairs,
      heldoutAccuracyBefore: metrics.heldout_accuracy_before,
      heldoutAccuracy: metrics.heldout_accuracy,
      heldoutMarginBefore: metrics.heldout_margin_before,
      heldoutMarginAfter: metrics.heldout_margin_after,
      lossFirst: metrics.loss_first,
      lossLast: metrics.loss_last,
      steps: r.steps,
      resumedFromStep: r.resumedFromStep,
    };
  }
}
