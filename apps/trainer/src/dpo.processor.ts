/**
 * The BullMQ worker of the `dpo` queue: reads the preference pairs (a store export or a JSONL file), runs
 * runDpoTraining (libs/rl) into the job's checkpoint folder (outName, else `dpo-<job id>-<creation time>`) with a
 * checkpoint every N steps, and reports step metrics as job progress; the result becomes a candidate policy version
 * whose metrics carry the held-out implied-reward accuracy and margin, its parent the published version it started
 * from. The job's lifecycle (run record, requeue at shutdown, register, publish) is TrainingJobProcessor's; a job
 * run again under the same id resumes from its last checkpoint. Not the training loop itself.
 */
import path from 'node:path';
import { Inject, Injectable } from '@nestjs/common';
import { dpoJobDataSchema, QUEUES, type DpoJobData, type DpoJobProgress, type DpoJobResult } from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { MeshConnection } from '@flywheel/mesh';
import { runDpoTraining, type DpoResult } from '@flywheel/rl';
import { publishedVersionOf } from './checkpoint.publisher';
import { finiteOrNull, sourceOf, TrainingJobProcessor, type PreparedTraining, type QueueJob, type TrainingTarget } from './queue.processor';
import { TRAINER_CONFIG } from './trainer.queues';
import { TrainerStore } from './trainer.store';

@Injectable()
export class DpoProcessor extends TrainingJobProcessor<DpoJobData, DpoResult, DpoJobResult> {
  constructor(@Inject(TRAINER_CONFIG) config: TrainerConfig, store: TrainerStore, mesh: MeshConnection) {
    super(config, store, mesh, { queue: QUEUES.dpo, schema: dpoJobDataSchema, kind: 'dpo', versionPrefix: 'dpo' });
  }

  protected async prepare(job: QueueJob, data: DpoJobData, { jobId, id, outDir }: TrainingTarget): Promise<PreparedTraining<DpoResult, DpoJobResult>> {
    const text = await this.store.trainingText(data.data, 'preference');
    const { source, exportIds } = sourceOf(data.data);
    this.logger.log(`job ${jobId}: DPO of ${data.modelDir} on ${source}, ${data.steps} steps, lr ${data.lr}, beta ${data.beta} → ${outDir}`);
    const baseVersion = await publishedVersionOf(this.mesh, 'policy', data.modelDir);

    return {
      run: { baseVersion, exportId: exportIds[0] ?? null },
      train: (recorder) =>
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
          lora: data.lora,
          ...this.resumeHooks({ jobId, id, outDir }),
          checkpointEvery: data.checkpointEvery,
          onProgress: this.progressReporter<DpoJobProgress>(
            job,
            recorder,
            (p) => `loss ${p.loss.toFixed(4)} acc ${p.accuracy.toFixed(2)} margin ${p.margin.toFixed(4)} grad norm ${p.gradNorm.toFixed(3)}`,
          ),
        }),
      finish: async (r) => {
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
        return {
          role: 'policy',
          source: data.data,
          metrics,
          baseVersion,
          lineage: { parent: baseVersion, exports: exportIds },
          summary:
            `held-out accuracy ${metrics.heldout_accuracy_before ?? '-'} → ${metrics.heldout_accuracy ?? '-'}; ` +
            `published candidate policy version ${id} (parent ${baseVersion ?? 'none'})`,
          result: {
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
          },
        };
      },
    };
  }
}
