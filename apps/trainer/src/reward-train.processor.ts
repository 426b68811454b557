/**
 * The BullMQ worker of the `reward-train` queue: reads the preference pairs (a store export or a JSONL file), runs
 * runRewardTraining (libs/train) into the job's checkpoint folder (outName, else `rm-<job id>-<creation time>`) and
 * reports step metrics as job progress (with promptSide, on one side of the data's split by prompt only); the result becomes a candidate reward version whose metrics carry the
 * held-out accuracy, its parent the reward version active then (as the loop records it). The job's lifecycle (run
 * record, register, publish) is TrainingJobProcessor's. Runs are short, so a job whose trainer died or shut down
 * starts over. Not the training loop itself.
 */
import path from 'node:path';
import { Inject, Injectable } from '@nestjs/common';
import { QUEUES, rewardTrainJobDataSchema, type RewardTrainJobData, type RewardTrainJobResult, type RewardTrainProgress } from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { MeshConnection, readActive } from '@flywheel/mesh';
import { preferenceLinesOnSide, runRewardTraining, type RewardTrainResult } from '@flywheel/train';
import { finiteOrNull, sourceOf, TrainingJobProcessor, type PreparedTraining, type QueueJob, type TrainingTarget } from './queue.processor';
import { TRAINER_CONFIG } from './trainer.queues';
import { TrainerStore } from './trainer.store';

@Injectable()
export class RewardTrainProcessor extends TrainingJobProcessor<RewardTrainJobData, RewardTrainResult, RewardTrainJobResult> {
  constructor(@Inject(TRAINER_CONFIG) config: TrainerConfig, store: TrainerStore, mesh: MeshConnection) {
    super(config, store, mesh, { queue: QUEUES.rewardTrain, schema: rewardTrainJobDataSchema, kind: 'reward-train', versionPrefix: 'rm' });
  }

  protected async prepare(job: QueueJob, data: RewardTrainJobData, { jobId, id, outDir }: TrainingTarget): Promise<PreparedTraining<RewardTrainResult, RewardTrainJobResult>> {
    const all = await this.store.trainingText(data.data, 'preference');
    const split = data.promptSide ? preferenceLinesOnSide(all, data.promptSide.side, data.promptSide.share) : null;
    const text = split ? split.text : all;
    const { source, exportIds } = sourceOf(data.data);
    const side = data.promptSide && split ? ` (the ${data.promptSide.side} side of its split by prompt: ${split.kept} lines, ${split.dropped} on the other side)` : '';
    this.logger.log(`job ${jobId}: reward model from ${data.modelDir} on ${source}${side}, ${data.steps} steps, lr ${data.lr} → ${outDir}`);

    return {
      run: { exportId: exportIds[0] ?? null },
      train: (recorder) =>
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
          lora: data.lora,
          threads: this.config.trainer.threads || undefined,
          onProgress: this.progressReporter<RewardTrainProgress>(job, recorder, (p) => `loss ${p.loss.toFixed(4)} acc ${p.accuracy.toFixed(2)} grad norm ${p.gradNorm.toFixed(3)}`),
        }),
      finish: async (r) => {
        const metrics = {
          heldout_accuracy: finiteOrNull(r.heldoutAccuracy),
          heldout_accuracy_before: finiteOrNull(r.heldoutAccuracyBefore),
          loss_first: r.lossFirst,
          loss_last: r.lossLast,
          pairs: r.pairs,
          heldout_pairs: r.heldoutPairs,
          steps: r.steps,
          base_model: path.resolve(data.modelDir),
          ...(data.promptSide ? { prompt_side: data.promptSide.side, prompt_share: data.promptSide.share } : {}),
        };
        const parent = (await readActive(await this.mesh.connected, 'reward'))?.version ?? null;
        return {
          role: 'reward',
          source: data.data,
          metrics,
          lineage: { parent, exports: exportIds },
          summary: `held-out accuracy ${metrics.heldout_accuracy ?? '-'}; published candidate reward version ${id} (parent ${parent ?? 'none'})`,
          result: {
            versionId: id,
            checkpointDir: outDir,
            pairs: r.pairs,
            heldoutPairs: r.heldoutPairs,
            heldoutAccuracy: metrics.heldout_accuracy,
            heldoutAccuracyBefore: metrics.heldout_accuracy_before,
            lossFirst: r.lossFirst,
            lossLast: r.lossLast,
            registered: true,
          },
        };
      },
    };
  }
}
