/**
 * The BullMQ worker of the `sft` queue: reads the training set (a store export or a JSONL file), runs runSft
 * (libs/train) into the job's checkpoint folder with a checkpoint every N steps, and reports step metrics as job
 * progress and logs; the result becomes a candidate policy version whose parent is the published version it started
 * from. The job's lifecycle (run record, requeue at shutdown, register, publish) is TrainingJobProcessor's; a job
 * run again under the same id resumes from its last checkpoint. Not the training loop itself.
 */
import path from 'node:path';
import { Inject, Injectable } from '@nestjs/common';
import { QUEUES, sftJobDataSchema, type SftJobData, type SftJobProgress, type SftJobResult } from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { MeshConnection } from '@flywheel/mesh';
import { runSft, type SftResult } from '@flywheel/train';
import { publishedVersionOf } from './checkpoint.publisher';
import { finiteOrNull, sourceOf, TrainingJobProcessor, type PreparedTraining, type QueueJob, type TrainingTarget } from './queue.processor';
import { TRAINER_CONFIG } from './trainer.queues';
import { TrainerStore } from './trainer.store';

@Injectable()
export class SftProcessor extends TrainingJobProcessor<SftJobData, SftResult, SftJobResult> {
  constructor(@Inject(TRAINER_CONFIG) config: TrainerConfig, store: TrainerStore, mesh: MeshConnection) {
    super(config, store, mesh, { queue: QUEUES.sft, schema: sftJobDataSchema, kind: 'sft', versionPrefix: 'sft' });
  }

  protected async prepare(job: QueueJob, data: SftJobData, { jobId, id, outDir }: TrainingTarget): Promise<PreparedTraining<SftResult, SftJobResult>> {
    const text = await this.store.trainingText(data.data, 'sft');
    const { source, exportIds } = sourceOf(data.data);
    const lora = data.lora ? `, LoRA r=${data.lora.rank}` : '';
    this.logger.log(`job ${jobId}: SFT of ${data.modelDir} on ${source}, ${data.steps} steps, lr ${data.lr}, batch ${data.batchSize}${lora} → ${outDir}`);
    const baseVersion = await publishedVersionOf(this.mesh, 'policy', data.modelDir);

    return {
      run: { baseVersion, exportId: exportIds[0] ?? null },
      train: (recorder) =>
        runSft({
          modelDir: data.modelDir,
          data: { text, source },
          outDir,
          steps: data.steps,
          lr: data.lr,
          batchSize: data.batchSize,
          seqLen: data.seqLen,
          heldout: data.heldout,
          seed: data.seed,
          ...this.resumeHooks({ jobId, id, outDir }),
          checkpointEvery: data.checkpointEvery,
          lora: data.lora,
          onProgress: this.progressReporter<SftJobProgress>(
            job,
            recorder,
            (p) => `loss ${p.loss.toFixed(4)} lr ${p.lr.toExponential(2)} grad norm ${p.gradNorm.toFixed(3)} ${Math.round(p.tokensPerS)} tok/s`,
          ),
        }),
      finish: async (r) => {
        const metrics = {
          heldout_loss_before: finiteOrNull(r.heldoutLossBefore),
          heldout_loss_after: finiteOrNull(r.heldoutLossAfter),
          train_loss_first: finiteOrNull(r.trainLossFirst),
          train_loss_last: finiteOrNull(r.trainLossLast),
          tokens_per_s: r.tokensPerS,
          mfu: r.mfu,
          steps: r.steps,
          base_model: path.resolve(data.modelDir),
        };
        return {
          role: 'policy',
          source: data.data,
          metrics,
          baseVersion,
          lineage: { parent: baseVersion, exports: exportIds },
          summary: `held-out loss ${r.heldoutLossBefore.toFixed(4)} → ${r.heldoutLossAfter.toFixed(4)}; published candidate policy version ${id} (parent ${baseVersion ?? 'none'})`,
          result: {
            versionId: id,
            trainingRunId: id,
            checkpointDir: outDir,
            steps: r.steps,
            resumedFromStep: r.resumedFromStep,
            heldoutLossBefore: metrics.heldout_loss_before,
            heldoutLossAfter: metrics.heldout_loss_after,
            trainLossLast: metrics.train_loss_last,
            tokensPerS: r.tokensPerS,
          },
        };
      },
    };
  }
}
