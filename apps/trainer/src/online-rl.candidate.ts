/**
 * What a PPO or GRPO job's trained policy is registered as: a candidate policy version whose metrics are the run's
 * first and last mean reward and its last KL, its parent the job's base version, and a result that hands the held-out
 * prompts to the eval stage. Each job adds its own metrics and result fields. Not the training (libs/rl).
 */
import path from 'node:path';
import type { TrainingDataSource } from '@flywheel/contracts';
import type { JobPrompts } from './prompt-set.reader';
import type { TrainedCandidate, TrainingTarget } from './queue.processor';

/** The job data both jobs share. */
interface OnlineRlJob {
  modelDir: string;
  prompts: TrainingDataSource;
  baseVersion: string | null;
  exportIds: string[];
}

/** What runPpo and runGrpo return, with the reward version that scored the run. */
interface OnlineRlRun {
  history: ReadonlyArray<{ reward_mean: number; kl: number }>;
  steps: number;
  seconds: number;
  resumedFromStep: number;
  rewardVersion: string;
}

export function onlineRlCandidate<X extends object>(
  job: OnlineRlJob,
  { id, outDir }: TrainingTarget,
  prompts: JobPrompts,
  run: OnlineRlRun,
  /** The job's own metrics and result fields, and what its summary line begins with (GRPO: the algorithm). */
  own: { metrics: Record<string, unknown>; result: X; label?: string },
) {
  const first = run.history[0];
  const last = run.history[run.history.length - 1];
  const rewardFirst = first?.reward_mean ?? null;
  const rewardLast = last?.reward_mean ?? null;
  const klLast = last?.kl ?? null;
  const metrics = {
    ...own.metrics,
    reward_first: rewardFirst,
    reward_last: rewardLast,
    kl_last: klLast,
    steps: run.steps,
    seconds: run.seconds,
    reward_version: run.rewardVersion,
    train_prompts: prompts.train.length,
    heldout_prompts: prompts.heldout.length,
    base_model: path.resolve(job.modelDir),
  };
  const label = own.label === undefined ? '' : `${own.label}: `;
  const fixed = (x: number | null): string => (x === null ? '-' : x.toFixed(3));
  return {
    role: 'policy',
    source: job.prompts,
    metrics,
    baseVersion: job.baseVersion,
    lineage: { parent: job.baseVersion, exports: job.exportIds },
    summary: `${label}reward ${fixed(rewardFirst)} → ${fixed(rewardLast)}, KL ${fixed(klLast)}; published candidate policy ${id}`,
    result: {
      versionId: id,
      trainingRunId: id,
      checkpointDir: outDir,
      ...own.result,
      steps: run.steps,
      resumedFromStep: run.resumedFromStep,
      rewardFirst,
      rewardLast,
      klLast,
      heldoutPrompts: prompts.heldout,
    },
  } satisfies TrainedCandidate<unknown>;
}
