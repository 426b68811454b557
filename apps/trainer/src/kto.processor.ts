/**
 * The BullMQ worker of the `kto` queue: reads the labelled examples (a store `kto` export or a JSONL file), runs
 * runKtoTraining (libs/rl) into the job's checkpoint folder (outName, else `kto-<job id>-<creation time>`) with a
 * checkpoint every N steps, and reports step metrics as job progress; the result becomes a candidate policy version
 * whose metrics carry the held-out implied-reward separation and margin, its parent the published version it started
 * from. The job's lifecycle (run record, requeue at shutdown, register, publish) is TrainingJobProcessor's; a job
 * run again under the same id resumes from its last checkpoint. Not the training loop itself.
 */
import path from 'node:path';
import { Inject, Injectable } from '@nestjs/common';
import { ktoJobDataSchema, QUEUES, type KtoJobData, type KtoJobProgress, type KtoJobResult } from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { MeshConnection } from '@flywheel/mesh';
import { runKtoTraining, type KtoProgress, type KtoResult } from '@flywheel/rl';
import { publishedVersionOf } from './checkpoint.publisher';
import { finiteOrNull, sourceOf, TrainingJobProcessor, type PreparedTraining, type QueueJob, type TrainingTarget } from './queue.processor';
import { TRAINER_CONFIG } from './trainer.queues';
import { TrainerStore } from './trainer.store';

/** A step's progress on the wire: a reward of a kind the step's batch lacked is null, not NaN. */
export function ktoJobProgressOf(p: KtoProgress): KtoJobProgress {
  return { ...p, chosenReward: finiteOrNull(p.chosenReward), rejectedReward: finiteOrNull(p.rejectedReward), margin: finiteOrNull(p.margin) };
}

const fixed = (x: number | null, digits: number): string => (x === null ? '-' : x.toFixed(digits));

@Injectable()
export class KtoProcessor extends TrainingJobProcessor<KtoJobData, KtoResult, KtoJobResult> {
  constructor(@Inject(TRAINER_CONFIG) config: TrainerConfig, store: TrainerStore, mesh: MeshConnection) {
    super(config, store, mesh, { queue: QUEUES.kto, schema: ktoJobDataSchema, kind: 'kto', versionPrefix: 'kto' });
  }

  protected async prepare(job: QueueJob, data: KtoJobData, { jobId, id, outDir }: TrainingTarget): Promise<PreparedTraining<KtoResult, KtoJobResult>> {
    const text = await this.store.trainingText(data.data, 'kto');
    const { source, exportIds } = sourceOf(data.data);
    this.logger.log(`job ${jobId}: KTO of ${data.modelDir} on ${source}, ${data.steps} steps, lr ${data.lr}, beta ${data.beta} → ${outDir}`);
    const baseVersion = await publishedVersionOf(this.mesh, 'policy', data.modelDir);

    return {
      run: { baseVersion, exportId: exportIds[0] ?? null },
      train: (recorder) => {
        const report = this.progressReporter<KtoJobProgress>(
          job,
          recorder,
          (p) => `loss ${p.loss.toFixed(4)} kl ${p.kl.toFixed(4)} margin ${fixed(p.margin, 4)} grad norm ${p.gradNorm.toFixed(3)}`,
        );
        return runKtoTraining({
          modelDir: data.modelDir,
          data: { text, source },
          outDir,
          steps: data.steps,
          lr: data.lr,
          beta: data.beta,
          desirableWeight: data.desirableWeight,
          undesirableWeight: data.undesirableWeight,
          batchSize: data.batchSize,
          seqLen: data.seqLen,
          heldout: data.heldout,
          seed: data.seed,
          lora: data.lora,
          ...this.resumeHooks({ jobId, id, outDir }),
          checkpointEvery: data.checkpointEvery,
          onProgress: (p) => report(ktoJobProgressOf(p)),
          onWarning: (message) => this.logger.warn(`job ${jobId}: ${message}`),
        });
      },
      finish: async (r) => {
        const metrics = {
          heldout_separation: finiteOrNull(r.heldoutSeparation),
          heldout_separation_before: finiteOrNull(r.heldoutSeparationBefore),
          heldout_margin_after: finiteOrNull(r.heldoutMarginAfter),
          heldout_margin_before: finiteOrNull(r.heldoutMarginBefore),
          loss_first: finiteOrNull(r.lossFirst),
          loss_last: finiteOrNull(r.lossLast),
          examples: r.examples,
          desirable: r.desirable,
          undesirable: r.undesirable,
          heldout_examples: r.heldoutExamples,
          steps: r.steps,
          beta: data.beta,
          desirable_weight: data.desirableWeight,
          undesirable_weight: data.undesirableWeight,
          base_model: path.resolve(data.modelDir),
        };
        return {
          role: 'policy',
          source: data.data,
          metrics,
          baseVersion,
          lineage: { parent: baseVersion, exports: exportIds },
          summary:
            `held-out separation ${metrics.heldout_separation_before ?? '-'} → ${metrics.heldout_separation ?? '-'}; ` +
            `published candidate policy version ${id} (parent ${baseVersion ?? 'none'})`,
          result: {
            versionId: id,
            trainingRunId: id,
            checkpointDir: outDir,
            examples: r.examples,
            desirable: r.desirable,
            undesirable: r.undesirable,
            heldoutExamples: r.heldoutExamples,
            heldoutSeparationBefore: metrics.heldout_separation_before,
            heldoutSeparation: metrics.heldout_separation,
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
