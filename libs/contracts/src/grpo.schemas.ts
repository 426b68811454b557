/**
 * The critic-free policy optimisers' job on the `grpo` queue (GRPO, RLOO, REINFORCE++ and best-of-n RFT as one
 * configurable job):
 * its config with the documented defaults, job data, per-step metrics and result. Shapes only; the trainer is
 * libs/rl/src/grpo.trainer.ts, the worker apps/trainer/src/grpo.processor.ts.
 */
import { z } from 'zod';
import { rewardSpecSchema } from './reward-functions.schemas';
import { checkpointFolderNameSchema, loraJobOptionsSchema, trainingDataSourceSchema } from './trainer.schemas';

/**
 * rft: online rejection-sampling fine-tuning (best of each group, learned as SFT with the same KL term).
 * online-dpo: iterative DPO on the policy's own samples (each group's best over its worst as a preference pair, the DPO
 * loss against the frozen reference at `dpoBeta`; Guo et al. 2024, TRL's OnlineDPOTrainer).
 */
export const GRPO_ALGORITHMS = ['grpo', 'rloo', 'reinforce++', 'rft', 'online-dpo'] as const;

/**
 * Defaults follow TRL's GRPOTrainer and DAPO where they fit a small model on 2 cores: groups of 4 samples of 16
 * prompts per step (the 64 rollouts a PPO step samples), one update per step over mini-batches of 32, token-level
 * loss aggregation, clip 0.2 with the upper bound at 0.28 (clip-higher), the k3 KL to the reference as a loss term
 * with β 0.04, dynamic sampling on (a group whose samples all score the same teaches nothing and is dropped).
 */
export const grpoConfigSchema = z.strictObject({
  algorithm: z.enum(GRPO_ALGORITHMS).default('grpo'),
  steps: z.int().positive().max(100_000).default(8),
  /** Distinct prompts per step; each is sampled `groupSize` times. */
  promptsPerStep: z.int().positive().max(512).default(16),
  groupSize: z.int().min(2).max(64).default(4),
  maxNewTokens: z.int().positive().max(4096).default(48),
  stop: z.array(z.string().min(1).max(64)).max(8).default([]),
  /** Passes over each step's rollouts (1: on-policy, the ratio is 1 at the first mini-batch). */
  epochs: z.int().positive().max(16).default(1),
  miniBatch: z.int().positive().max(512).default(32),
  lr: z.number().positive().max(1).default(5e-5),
  clipLow: z.number().positive().max(1).default(0.2),
  clipHigh: z.number().positive().max(10).default(0.28),
  /** GRPO only: divide by the group's reward std (Dr. GRPO argues against it: it favours easy and hard prompts). */
  scaleStd: z.boolean().default(true),
  /** β: KL to the reference, as the k3 loss term (`loss`) or as a per-token k1 penalty on the reward (`reward`). */
  klCoef: z.number().min(0).default(0.04),
  klMode: z.enum(['loss', 'reward']).default('loss'),
  /** online-dpo only: β of the DPO loss (its implicit KL to the reference; TRL's default 0.1). klCoef/klMode do not apply. */
  dpoBeta: z.number().positive().max(10).default(0.1),
  aggregation: z.enum(['token', 'sequence']).default('token'),
  dynamicSampling: z.boolean().default(true),
  logRatioClamp: z.number().positive().default(10),
  maxGradNorm: z.number().positive().default(1),
  seed: z.int().nonnegative().default(1),
  checkpointEvery: z.int().nonnegative().default(5),
  /**
   * Train LoRA adapters on the frozen base instead of every weight; the reference is that base, the same model with its
   * adapters off (no second copy of the weights).
   */
  lora: loraJobOptionsSchema.optional(),
});
export type GrpoConfig = z.infer<typeof grpoConfigSchema>;
export type GrpoConfigInput = z.input<typeof grpoConfigSchema>;

/** Data of a job on the `grpo` queue: as a ppo job, without a critic. */
export const grpoJobDataSchema = z.strictObject({
  modelDir: z.string().min(1),
  baseVersion: z.string().nullable().default(null),
  rewardVersion: z.string().nullable().default(null),
  prompts: trainingDataSourceSchema,
  heldout: z.number().min(0).max(0.5).default(0.2),
  config: grpoConfigSchema.partial().default({}),
  /** How rewards are made: the reward model and verifiable functions by weight (default: the reward model alone). */
  rewards: rewardSpecSchema.optional(),
  parentRunId: z.string().nullable().default(null),
  exportIds: z.array(z.string()).default([]),
  outName: checkpointFolderNameSchema.optional(),
});
export type GrpoJobData = z.infer<typeof grpoJobDataSchema>;
export type GrpoJobDataInput = z.input<typeof grpoJobDataSchema>;

/** One step's metrics: the job's progress, the run's curves. */
export const grpoStepMetricsSchema = z.strictObject({
  step: z.int().positive(),
  steps: z.int().positive(),
  reward_mean: z.number(),
  reward_std: z.number(),
  /** Mean within-group reward std: the signal group baselines learn from. */
  group_reward_std: z.number(),
  /** Share of groups kept by dynamic sampling (all, when it is off). */
  groups_kept: z.number(),
  kl: z.number(),
  approx_kl: z.number(),
  clip_fraction: z.number(),
  entropy: z.number(),
  policy_loss: z.number(),
  kl_loss: z.number(),
  response_length: z.number(),
  stop_fraction: z.number(),
  grad_norm: z.number(),
  /** Mean of each part of the reward over the step's samples (`model` and each reward function by name), with a reward spec. */
  rewards: z.record(z.string(), z.number()).optional(),
  time_rollout_s: z.number(),
  time_score_s: z.number(),
  time_update_s: z.number(),
  /** MiB the trainer's models hold after the step (policy and reference: weights, gradients, AdamW moments, activations). */
  model_memory_mb: z.number().optional(),
});
export type GrpoStepMetrics = z.infer<typeof grpoStepMetricsSchema>;

export const grpoJobResultSchema = z.strictObject({
  versionId: z.string(),
  trainingRunId: z.string(),
  checkpointDir: z.string(),
  algorithm: z.enum(GRPO_ALGORITHMS),
  steps: z.int(),
  resumedFromStep: z.int(),
  rewardFirst: z.number().nullable(),
  rewardLast: z.number().nullable(),
  klLast: z.number().nullable(),
  /** Prompts held out of training, for the eval stage. */
  heldoutPrompts: z.array(z.array(z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() }))),
});
export type GrpoJobResult = z.infer<typeof grpoJobResultSchema>;
