/**
 * The BullMQ worker of the `ppo` queue: reads the prompts (any export or JSONL), keeps a seeded held-out share for
 * the eval job, waits until the reward service serves the job's reward version, runs runPpo (libs/rl) with that
 * service as the scorer, and records every step (job progress, the run's metric series, the trainer's Prometheus
 * gauges). The trained policy becomes a candidate whose parent is the job's base version. The job's lifecycle (run
 * record, requeue at shutdown, register, publish) is TrainingJobProcessor's; a job restarted under the same id (its
 * trainer died or shut down) resumes from its last checkpoint. Not the PPO algorithm (libs/rl).
 */
import { Inject, Injectable } from '@nestjs/common';
import { ppoJobDataSchema, QUEUES, type PpoJobData, type PpoJobResult } from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { MeshConnection } from '@flywheel/mesh';
import { runPpo, type PpoResult } from '@flywheel/rl';
import { onlineRlCandidate } from './online-rl.candidate';
import { readJobPrompts } from './prompt-set.reader';
import { RewardClient } from './reward.client';
import { TrainerMetrics } from './trainer.metrics';
import { TrainingJobProcessor, type PreparedTraining, type QueueJob, type TrainingTarget } from './queue.processor';
import { TRAINER_CONFIG } from './trainer.queues';
import { TrainerStore } from './trainer.store';

/** How long a job waits for the reward service to serve its reward version (a swap after promotion). */
const REWARD_WAIT_MS = 120_000;

/** What finish() needs beyond runPpo's result: the reward version that scored the run. */
type PpoTrained = PpoResult & { rewardVersion: string };

@Injectable()
export class PpoProcessor extends TrainingJobProcessor<PpoJobData, PpoTrained, PpoJobResult> {
  constructor(
    @Inject(TRAINER_CONFIG) config: TrainerConfig,
    store: TrainerStore,
    mesh: MeshConnection,
    private readonly metrics: TrainerMetrics,
  ) {
    super(config, store, mesh, { queue: QUEUES.ppo, schema: ppoJobDataSchema, kind: 'ppo', versionPrefix: 'ppo' });
  }

  protected async prepare(job: QueueJob, data: PpoJobData, { jobId, outDir, id }: TrainingTarget): Promise<PreparedTraining<PpoTrained, PpoJobResult>> {
    const seed = data.config.seed ?? 1;
    const prompts = await readJobPrompts(this.store, data.prompts, data.heldout, seed);

    return {
      run: { parentRunId: data.parentRunId, baseVersion: data.baseVersion, exportId: data.prompts.kind === 'export' ? data.prompts.exportId : null },
      train: async (recorder) => {
        const reward = new RewardClient(this.mesh, data.rewardVersion, undefined, data.rewards ?? null);
        const rewardVersion = await reward.ready(REWARD_WAIT_MS);
        this.logger.log(`job ${jobId}: PPO of ${data.modelDir} on ${prompts.train.length} prompts (${prompts.heldout.length} held out), reward ${rewardVersion} → ${outDir}`);
        const r = await runPpo({
          policyDir: data.modelDir,
          criticDir: data.criticDir,
          prompts: prompts.train,
          references: prompts.references,
          score: (pairs) => reward.score(pairs),
          outDir,
          config: data.config,
          ...this.resumeHooks({ jobId, id, outDir }),
          policyVersion: data.baseVersion,
          onStep: async (m) => {
            this.metrics.ppoStep(m);
            await job.updateProgress(m);
            await recorder.step(m.step, m);
            this.logger.log(
              `job ${jobId}: step ${m.step}/${m.steps} reward ${m.reward_mean.toFixed(3)}±${m.reward_std.toFixed(3)} kl ${m.kl.toFixed(3)} ` +
                `(coef ${m.kl_coef.toFixed(4)}) clip ${m.clip_fraction.toFixed(3)} value loss ${m.value_loss.toFixed(4)}`,
            );
          },
        });
        return { ...r, rewardVersion };
      },
      finish: async (r) => onlineRlCandidate(data, { jobId, id, outDir }, prompts, r, { metrics: { kl_coef: r.klCoef }, result: {} }),
    };
  }
}
