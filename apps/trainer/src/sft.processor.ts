/**
 * The BullMQ worker of the `sft` queue: parses the job data, reads the training set (a store export or a JSONL
 * file), runs runSft (libs/model) into `<state dir>/checkpoints/<name>` with a checkpoint every N steps, reports
 * step metrics as job progress and logs, and registers the result as a candidate policy version and publishes it to
 * the checkpoint object store with its lineage (the published version it started from, run, export), so it can be
 * promoted from the admin UI. A job that runs again under the same id (its trainer died) resumes from its last
 * checkpoint. Not the training loop itself.
 */
import path from 'node:path';
import { Inject, Injectable } from '@nestjs/common';
import { WaitingError, type Job } from 'bullmq';
import { QUEUES, sftJobDataSchema, type SftJobProgress, type SftJobResult } from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { MeshConnection } from '@flywheel/mesh';
import { runSft, SftStoppedError, type SftResult } from '@flywheel/model';
import { publishedVersionOf, registerAndPublish } from './checkpoint.publisher';
import { candidateOf, jobVersionId, parseJobData, QueueProcessor } from './queue.processor';
import { RunRecorder } from './run.recorder';
import { TRAINER_CONFIG } from './trainer.queues';
import { TrainerStore } from './trainer.store';

const finiteOrNull = (x: number): number | null => (Number.isFinite(x) ? x : null);

@Injectable()
export class SftProcessor extends QueueProcessor<SftJobResult> {
  constructor(
    @Inject(TRAINER_CONFIG) config: TrainerConfig,
    private readonly store: TrainerStore,
    private readonly mesh: MeshConnection,
  ) {
    super(config, QUEUES.sft);
  }

  async process(job: Job, token?: string): Promise<SftJobResult> {
    const data = parseJobData(sftJobDataSchema, job.data, QUEUES.sft);
    const jobId = job.id ?? 'unknown';
    const id = jobVersionId('sft', job, data.outName);
    const outDir = path.resolve(this.config.stateDir, 'checkpoints', id);
    const startedAt = new Date();
    const text = await this.store.trainingText(data.data, 'sft');
    const source = data.data.kind === 'export' ? `export ${data.data.exportId}` : path.resolve(data.data.path);
    const every = Math.max(1, Math.floor(data.steps / 20));
    const lora = data.lora ? `, LoRA r=${data.lora.rank}` : '';
    this.logger.log(`job ${jobId}: SFT of ${data.modelDir} on ${source}, ${data.steps} steps, lr ${data.lr}, batch ${data.batchSize}${lora} → ${outDir}`);

    const exportIds = data.data.kind === 'export' ? [data.data.exportId] : [];
    const baseVersion = await publishedVersionOf(this.mesh, 'policy', data.modelDir);
    const recorder = new RunRecorder(this.store, id);
    await recorder.start('sft', { baseVersion, exportId: exportIds[0] ?? null, config: { ...data, jobId } });
    let r: SftResult;
    try {
      r = await recorder.track(() => runSft({
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
        checkpointEvery: data.checkpointEvery,
        lora: data.lora,
        resume: true,
        onResume: (step) => this.logger.log(`job ${jobId}: resuming from step ${step} (${outDir})`),
        onProgress: async (p) => {
          const progress: SftJobProgress = p;
          await job.updateProgress(progress);
          await recorder.step(p.step, p);
          if (p.step % every === 0 || p.step === p.steps) {
            this.logger.log(
              `job ${jobId}: step ${p.step}/${p.steps} loss ${p.loss.toFixed(4)} lr ${p.lr.toExponential(2)} ` +
                `grad norm ${p.gradNorm.toFixed(3)} ${Math.round(p.tokensPerS)} tok/s`,
            );
          }
        },
        onCheckpoint: (step) => this.logger.log(`job ${jobId}: checkpoint at step ${step}`),
        shouldStop: () => this.stopping,
      }), (err) => err instanceof SftStoppedError);
    } catch (err) {
      if (!(err instanceof SftStoppedError)) throw err;
      this.logger.log(`job ${jobId}: trainer shutting down; stopped at step ${err.step}, job back in the queue`);
      await job.moveToWait(token);
      throw new WaitingError();
    }

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
    await registerAndPublish(
      this.store,
      this.mesh,
      candidateOf({ id, role: 'policy', kind: 'sft', source: data.data, config: { ...data, jobId }, startedAt, checkpoint: outDir, metrics, baseVersion }),
      { parent: baseVersion, exports: exportIds },
    );
    this.logger.log(
      `job ${jobId}: held-out loss ${r.heldoutLossBefore.toFixed(4)} → ${r.heldoutLossAfter.toFixed(4)}; ` +
        `published candidate policy version ${id} (parent ${baseVersion ?? 'none'})`,
    );
    return {
      versionId: id,
      trainingRunId: id,
      checkpointDir: outDir,
      steps: r.steps,
      resumedFromStep: r.resumedFromStep,
      heldoutLossBefore: metrics.heldout_loss_before,
      heldoutLossAfter: metrics.heldout_loss_after,
      trainLossLast: metrics.train_loss_last,
      tokensPerS: r.tokensPerS,
    };
  }
}
