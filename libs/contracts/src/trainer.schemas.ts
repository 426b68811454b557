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
  /** Folder name under `<state dir>/checkpoints/`: letters, digits, `.`, `_`, `-`. */
  outName: z.string().regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/).max(128).optional(),
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
  outName: z.string().regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/).max(128).optional(),
});
export type RewardTrainJobData = z.infer<typeof rewardTrainJobDataSchema>;
export type RewardTrainJobDataInput = z.input<typeof rewardTrainJobDataSchema>;
