/**
 * The BullMQ worker of the `grpo` queue (GRPO, RLOO or REINFORCE++, by the job's config): reads the prompts, keeps a
 * seeded held-out share for the eval job, waits until the reward service serves the job's reward version, runs
 * runGrpo (libs/rl) with that service as the scorer, and records every step (job progress, the run's metric series).
 * The trained policy becomes a candidate whose parent is the job's base version. Lifecycle (run record, requeue at
 * shutdown, register, publish) as every training job; a job restarted under the same id resumes from its last
 * checkpoint. Not the algorithm (libs/rl/src/grpo.trainer.ts).
 */
import { Inject, Injectable } from '@nestjs/common';
import { grpoConfigSchema, grpoJobDataSchema, QUEUES, type GrpoJobData, type GrpoJobResult, type GrpoStepMetrics } from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { MeshConnection } from '@flywheel/mesh';
import { runGrpo, type GrpoResult } from '@flywheel/rl';
import { onlineRlCandidate } from './online-rl.candidate';
import { readJobPrompts } from './prompt-set.reader';
import { RewardClient } from './reward.client';
import { TrainingJobProcessor, type PreparedTraining, type QueueJob, type TrainingTarget } from './queue.processor';
import { TRAINER_CONFIG } from './trainer.queues';
import { TrainerStore } from './trainer.store';

/** How long a job waits for the reward service to serve its reward version (a swap after promotion). */
const REWARD_WAIT_MS = 120_000;

type GrpoTrained = GrpoResult & { rewardVersion: string };

/** The run's series is flat: each part of the reward becomes its own curve, `reward_<part>`. */
function seriesPoint(m: GrpoStepMetrics): Record<string, number> {
  const { rewards, ...rest } = m;
  return { ...rest, ...Object.fromEntries(Object.entries(rewards ?? {}).map(([k, v]) => [`reward_${k}`, v])) };
}

@Injectable()
export class GrpoProcessor extends TrainingJobProcessor<GrpoJobData, GrpoTrained, GrpoJobResult> {
  constructor(@Inject(TRAINER_CONFIG) config: TrainerConfig, store: TrainerStore, mesh: MeshConnection) {
    super(config, store, mesh, { queue: QUEUES.grpo, schema: grpoJobDataSchema, kind: 'grpo', versionPrefix: 'grpo' });
  }

  protected async prepare(job: QueueJob, data: GrpoJobData, { jobId, outDir, id }: TrainingTarget): Promise<PreparedTraining<GrpoTrained, GrpoJobResult>> {
    const cfg = grpoConfigSchema.parse(data.config);
    const prompts = await readJobPrompts(this.store, data.prompts, data.heldout, cfg.seed);

    return {
      run: { parentRunId: data.parentRunId, baseVersion: data.baseVersion, exportId: data.prompts.kind === 'export' ? data.prompts.exportId : null },
      train: async (recorder) => {
        const reward = new RewardClient(this.mesh, data.rewardVersion, undefined, data.rewards ?? null);
        const rewardVersion = await reward.ready(REWARD_WAIT_MS);
        this.logger.log(`job ${jobId}: ${cfg.algorithm} of ${data.modelDir} on ${prompts.train.length} prompts (${prompts.heldout.length} held out), groups of ${cfg.groupSize}, reward ${rewardVersion} → ${outDir}`);
        const hooks = this.resumeHooks({ jobId, id, outDir });
        const r = await runGrpo({
          policyDir: data.modelDir,
          prompts: prompts.train,
          references: prompts.references,
          score: (pairs) => reward.scoreParts(pairs),
          outDir,
          config: cfg,
          ...hooks,
          policyVersion: data.baseVersion,
          onResume: async (step, history) => {
            hooks.onResume(step);
            // The curve keeps every step: one logged just before a kill may not have reached the store.
            for (const m of history) await recorder.step(m.step, seriesPoint(m));
          },
          onStep: async (m) => {
            await job.updateProgress(m);
            await recorder.step(m.step, seriesPoint(m));
            this.logger.log(
              `job ${jobId}: step ${m.step}/${m.steps} reward ${m.reward_mean.toFixed(3)}±${m.reward_std.toFixed(3)} (in-group ${m.group_reward_std.toFixed(3)}) ` +
                `kl ${m.kl.toFixed(3)} clip ${m.clip_fraction.toFixed(3)} groups kept ${(m.groups_kept * 100).toFixed(0)}%`,
            );
          },
        });
        return { ...r, rewardVersion };
      },
      finish: async (r) =>
        onlineRlCandidate(data, { jobId, id, outDir }, prompts, r, { metrics: { algorithm: cfg.algorithm }, result: { algorithm: cfg.algorithm }, label: cfg.algorithm }),
    };
  }
}
