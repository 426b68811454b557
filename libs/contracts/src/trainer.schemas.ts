/** Trainer payloads on the mesh. Job data schemas join this file as the training issues land. */
import { z } from 'zod';

export const trainerInfoRequestSchema = z.object({}).strict();
export const trainerInfoSchema = z.object({
  queues: z.record(z.string(), z.record(z.string(), z.number())),
});
export type TrainerInfo = z.infer<typeof trainerInfoSchema>;

/** Where a training job reads its JSONL: an export in the store (its stored content) or a file the trainer can read. */
export const trainingDataSourceSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('export'), exportId: z.string().min(1) }),
  z.strictObject({ kind: z.literal('jsonl'), path: z.string().min(1) }),
]);
export type TrainingDataSource = z.infer<typeof trainingDataSourceSchema>;

/** A job's checkpoint folder in `<state dir>/checkpoints/`: letters, digits, `.`, `_`, `-`, not starting with `.`. */
export const checkpointFolderNameSchema = z.string().regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/).max(128);

/**
 * LoRA adapters for a fine-tuning job: the base stays frozen, each targeted projection gets trainable low-rank A/B
 * (scaled by alpha / rank); the job's checkpoint holds the merged weights, its `adapter/` folder the PEFT adapter.
 */
export const loraJobOptionsSchema = z.strictObject({
  rank: z.int().positive().max(4096),
  /** Default 2 * rank. */
  alpha: z.number().positive().max(1e6).optional(),
  /** Projections in every layer; default all seven. */
  targets: z
    .array(z.enum(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']))
    .min(1)
    .refine((t) => new Set(t).size === t.length, 'lists a projection twice')
    .optional(),
});
export type LoraJobOptions = z.infer<typeof loraJobOptionsSchema>;

/**
 * Data of a job on the `sft` queue. The training set is an SFT export in the store (its JSONL content) or a JSONL
 * file readable by the trainer; the checkpoint goes to `<state dir>/checkpoints/<outName>` (default `sft-<job id>`),
 * so a job restarted under the same id resumes from its last saved step.
 */
export const sftJobDataSchema = z.strictObject({
  /** Base policy: a Hugging Face checkpoint directory readable by the trainer. */
  modelDir: z.string().min(1),
  data: trainingDataSourceSchema,
  steps: z.int().positive().max(1_000_000),
  lr: z.number().positive().max(1),
  batchSize: z.int().positive().max(1024).default(8),
  seqLen: z.int().min(2).max(131_072).optional(),
  heldout: z.number().min(0).max(0.5).default(0.1),
  seed: z.int().nonnegative().default(0),
  /** Checkpoint + training state every N steps (0: only at the end). */
  checkpointEvery: z.int().nonnegative().default(50),
  outName: checkpointFolderNameSchema.optional(),
  /** Train LoRA adapters instead of every weight. */
  lora: loraJobOptionsSchema.optional(),
});
export type SftJobData = z.infer<typeof sftJobDataSchema>;
export type SftJobDataInput = z.input<typeof sftJobDataSchema>;

/** What an `sft` job reports through job.updateProgress after every optimizer step. */
export const sftJobProgressSchema = z.strictObject({
  step: z.int().nonnegative(),
  steps: z.int().positive(),
  loss: z.number(),
  tokensPerS: z.number(),
  lr: z.number(),
  gradNorm: z.number(),
});
export type SftJobProgress = z.infer<typeof sftJobProgressSchema>;

/** An `sft` job's return value: the candidate policy version it registered and its losses. */
export const sftJobResultSchema = z.strictObject({
  versionId: z.string(),
  trainingRunId: z.string(),
  checkpointDir: z.string(),
  steps: z.int(),
  resumedFromStep: z.int(),
  heldoutLossBefore: z.number().nullable(),
  heldoutLossAfter: z.number().nullable(),
  trainLossLast: z.number().nullable(),
  tokensPerS: z.number(),
});
export type SftJobResult = z.infer<typeof sftJobResultSchema>;

// ---- reward-train (reward model; owned with apps/trainer/src/reward-train.processor.ts) ----------------------

/**
 * Data of a job on the `reward-train` queue: Bradley–Terry training of a scalar-head reward model initialised from
 * a policy checkpoint, on a preference export (`{prompt, chosen, rejected}` lines) or a JSONL file of that format.
 * The checkpoint goes to `<state dir>/checkpoints/<outName>` (default `rm-<job id>`).
 */
export const rewardTrainJobDataSchema = z.strictObject({
  modelDir: z.string().min(1),
  data: trainingDataSourceSchema,
  steps: z.int().positive().max(1_000_000).default(60),
  lr: z.number().positive().max(1).default(3e-3),
  /** Preference pairs per optimizer step (each is two sequences). */
  batchSize: z.int().positive().max(1024).default(8),
  seqLen: z.int().min(2).max(131_072).optional(),
  heldout: z.number().min(0).max(0.5).default(0.2),
  seed: z.int().nonnegative().default(0),
  outName: checkpointFolderNameSchema.optional(),
  /** Train LoRA adapters and the score head on the frozen base instead of every weight. */
  lora: loraJobOptionsSchema.optional(),
  /**
   * Train on one side of the data's split by prompt only (libs/train prompt-split.ts: a hash of the prompt puts `share`
   * of prompts on `heldout`): the RL loop's training and independent reward models. null: every line.
   */
  promptSide: z.strictObject({ side: z.enum(['train', 'heldout']), share: z.number().gt(0).lt(1) }).nullable().default(null),
});
export type RewardTrainJobData = z.infer<typeof rewardTrainJobDataSchema>;
export type RewardTrainJobDataInput = z.input<typeof rewardTrainJobDataSchema>;

// ---- dpo (offline preference optimization; owned with apps/trainer/src/dpo.processor.ts) ---------------------

/**
 * DPO defaults shared by the job, `flywheel train dpo` and runDpoTraining. β 0.1 is the paper's and TRL's. The lr
 * suits models of a few million parameters or less (the committed stories260K): TRL's 5e-7..1e-6 is meant for
 * billion-parameter models and barely moves a small one, while 1e-3 over-optimizes it (both sides' log-probs fall,
 * the chosen implied reward ends far below zero).
 */
export const DPO_DEFAULTS = { steps: 60, lr: 5e-5, beta: 0.1, labelSmoothing: 0, batchSize: 8, heldout: 0.2 } as const;

/**
 * Data of a job on the `dpo` queue: DPO of a policy checkpoint (also the frozen reference) on a preference export
 * (`{prompt, chosen, rejected}` lines) or a JSONL file of that format. The checkpoint goes to
 * `<state dir>/checkpoints/<outName>` (default `dpo-<job id>`), so a job restarted under the same id resumes.
 */
export const dpoJobDataSchema = z.strictObject({
  modelDir: z.string().min(1),
  data: trainingDataSourceSchema,
  steps: z.int().positive().max(1_000_000).default(DPO_DEFAULTS.steps),
  lr: z.number().positive().max(1).default(DPO_DEFAULTS.lr),
  /** Strength of the implicit KL penalty to the reference: larger keeps the policy closer to it. */
  beta: z.number().positive().max(100).default(DPO_DEFAULTS.beta),
  /** Conservative DPO: the assumed probability that a pair's label is flipped. */
  labelSmoothing: z.number().min(0).lt(0.5).default(DPO_DEFAULTS.labelSmoothing),
  /** Preference pairs per optimizer step (each is two sequences). */
  batchSize: z.int().positive().max(1024).default(DPO_DEFAULTS.batchSize),
  seqLen: z.int().min(2).max(131_072).optional(),
  heldout: z.number().min(0).max(0.5).default(DPO_DEFAULTS.heldout),
  seed: z.int().nonnegative().default(0),
  /** Checkpoint + training state every N steps (0: only at the end). */
  checkpointEvery: z.int().nonnegative().default(50),
  outName: checkpointFolderNameSchema.optional(),
  /** Train LoRA adapters on the frozen base (also the reference) instead of every weight. */
  lora: loraJobOptionsSchema.optional(),
});
export type DpoJobData = z.infer<typeof dpoJobDataSchema>;
export type DpoJobDataInput = z.input<typeof dpoJobDataSchema>;

/** What a `dpo` job reports through job.updateProgress after every optimizer step (rewards: implied, β (π − π_ref)). */
export const dpoJobProgressSchema = z.strictObject({
  step: z.int().nonnegative(),
  steps: z.int().positive(),
  loss: z.number(),
  /** Fraction of the step's pairs whose chosen implied reward is higher (ties count half). */
  accuracy: z.number(),
  chosenReward: z.number(),
  rejectedReward: z.number(),
  margin: z.number(),
  gradNorm: z.number(),
  lr: z.number(),
});
export type DpoJobProgress = z.infer<typeof dpoJobProgressSchema>;

/** A `dpo` job's return value: the candidate policy version it registered and its held-out preference metrics. */
export const dpoJobResultSchema = z.strictObject({
  versionId: z.string(),
  trainingRunId: z.string(),
  checkpointDir: z.string(),
  pairs: z.int(),
  heldoutPairs: z.int(),
  heldoutAccuracyBefore: z.number().nullable(),
  heldoutAccuracy: z.number().nullable(),
  heldoutMarginBefore: z.number().nullable(),
  heldoutMarginAfter: z.number().nullable(),
  lossFirst: z.number().nullable(),
  lossLast: z.number().nullable(),
  steps: z.int(),
  resumedFromStep: z.int(),
});
export type DpoJobResult = z.infer<typeof dpoJobResultSchema>;

// ---- kto (offline optimization on thumbs and ratings; owned with apps/trainer/src/kto.processor.ts) -----------

/**
 * KTO defaults shared by the job, `flywheel train kto` and runKtoTraining. β 0.1 and weights 1 are the paper's and
 * TRL's; the lr, like DPO's, suits models of a few million parameters or less (TRL's 5e-7..5e-6 is for billion-parameter
 * ones). batchSize must be at least 2: the KL reference point pairs each prompt with another example's completion.
 */
export const KTO_DEFAULTS = { steps: 60, lr: 5e-5, beta: 0.1, desirableWeight: 1, undesirableWeight: 1, batchSize: 8, heldout: 0.2 } as const;

/**
 * Data of a job on the `kto` queue: KTO of a policy checkpoint (also the frozen reference) on a KTO export
 * (`{prompt, completion, label}` lines: thumbs, ratings, corrections) or a JSONL file of that format. The checkpoint
 * goes to `<state dir>/checkpoints/<outName>` (default `kto-<job id>-<creation time>`), so a job restarted under the
 * same id resumes.
 */
export const ktoJobDataSchema = z.strictObject({
  modelDir: z.string().min(1),
  data: trainingDataSourceSchema,
  steps: z.int().positive().max(1_000_000).default(KTO_DEFAULTS.steps),
  lr: z.number().positive().max(1).default(KTO_DEFAULTS.lr),
  /** How sharply the value function saturates, and the pull to the reference: larger keeps the policy closer to it. */
  beta: z.number().positive().max(100).default(KTO_DEFAULTS.beta),
  /** λ_D and λ_U: raise the rarer kind's so that λ_D n_D / (λ_U n_U) lies in [1, 4/3] (TRL's advice). */
  desirableWeight: z.number().positive().max(100).default(KTO_DEFAULTS.desirableWeight),
  undesirableWeight: z.number().positive().max(100).default(KTO_DEFAULTS.undesirableWeight),
  /** Examples per optimizer step; each also gives the KL reference point one mismatched pair. */
  batchSize: z.int().min(2).max(1024).default(KTO_DEFAULTS.batchSize),
  seqLen: z.int().min(2).max(131_072).optional(),
  heldout: z.number().min(0).max(0.5).default(KTO_DEFAULTS.heldout),
  seed: z.int().nonnegative().default(0),
  /** Checkpoint + training state every N steps (0: only at the end). */
  checkpointEvery: z.int().nonnegative().default(50),
  outName: checkpointFolderNameSchema.optional(),
  /** Train LoRA adapters on the frozen base (also the reference) instead of every weight. */
  lora: loraJobOptionsSchema.optional(),
});
export type KtoJobData = z.infer<typeof ktoJobDataSchema>;
export type KtoJobDataInput = z.input<typeof ktoJobDataSchema>;

/**
 * What a `kto` job reports through job.updateProgress after every optimizer step: rewards are the step's mean implied
 * rewards β (π − π_ref) of its desirable and undesirable examples (null when the step had none of that kind), kl the
 * reference point z0 in nats.
 */
export const ktoJobProgressSchema = z.strictObject({
  step: z.int().nonnegative(),
  steps: z.int().positive(),
  loss: z.number(),
  kl: z.number(),
  chosenReward: z.number().nullable(),
  rejectedReward: z.number().nullable(),
  margin: z.number().nullable(),
  desirable: z.int().nonnegative(),
  undesirable: z.int().nonnegative(),
  gradNorm: z.number(),
  lr: z.number(),
});
export type KtoJobProgress = z.infer<typeof ktoJobProgressSchema>;

/**
 * A `kto` job's return value: the candidate policy version it registered and its held-out metrics. Separation: the
 * fraction of held-out (desirable, undesirable) pairs whose desirable completion has the higher implied reward (0.5
 * before training); margin: mean desirable minus mean undesirable implied reward.
 */
export const ktoJobResultSchema = z.strictObject({
  versionId: z.string(),
  trainingRunId: z.string(),
  checkpointDir: z.string(),
  examples: z.int(),
  desirable: z.int(),
  undesirable: z.int(),
  heldoutExamples: z.int(),
  heldoutSeparationBefore: z.number().nullable(),
  heldoutSeparation: z.number().nullable(),
  heldoutMarginBefore: z.number().nullable(),
  heldoutMarginAfter: z.number().nullable(),
  lossFirst: z.number().nullable(),
  lossLast: z.number().nullable(),
  steps: z.int(),
  resumedFromStep: z.int(),
});
export type KtoJobResult = z.infer<typeof ktoJobResultSchema>;
