/**
 * Wire shapes of the reward service (reward.score, reward.info) and of the trainer's `reward-train` job result.
 * The job data schema lives with the other queues in trainer.schemas.ts. Schemas only; no I/O.
 */
import { z } from 'zod';
import { chatMessageSchema } from './policy.schemas';
import { rewardReferenceSchema, rewardSpecSchema } from './reward-functions.schemas';

/** Most (prompt, response) pairs one reward.score request may carry. */
export const REWARD_MAX_PAIRS = 64;

/** A prompt is plain text (scored as prompt + response concatenated) or chat messages (the response is the assistant turn). */
export const rewardPairSchema = z.strictObject({
  prompt: z.union([z.string(), z.array(chatMessageSchema).min(1)]),
  response: z.string(),
  /** The prompt's reference columns, for exact / numeric reward functions. */
  reference: rewardReferenceSchema.optional(),
});
export type RewardPair = z.infer<typeof rewardPairSchema>;

export const rewardScoreRequestSchema = z.strictObject({
  pairs: z.array(rewardPairSchema).min(1).max(REWARD_MAX_PAIRS),
  /** Absent: the reward model's score alone. Present: model weight × its score + Σ weight × reward function. */
  rewards: rewardSpecSchema.optional(),
});
export type RewardScoreRequest = z.infer<typeof rewardScoreRequestSchema>;

/** scores[i] is the scalar reward of pairs[i]; model and version name what scored them. */
export const rewardScoreResponseSchema = z.object({
  scores: z.array(z.number()),
  model: z.string(),
  version: z.string(),
  /** With `rewards`: each part's raw value per pair (`model` for the reward model, then each function by name). */
  components: z.record(z.string(), z.array(z.number())).optional(),
});
export type RewardScoreResponse = z.infer<typeof rewardScoreResponseSchema>;

export const rewardInfoRequestSchema = z.object({}).strict();
/** model/version are null while no reward model is configured (reward.score then answers `unavailable`). */
export const rewardInfoSchema = z.object({
  model: z.string().nullable(),
  version: z.string().nullable(),
  ready: z.boolean(),
  contextLength: z.number().int().nullable(),
  hasChatTemplate: z.boolean().nullable(),
  instanceId: z.string(),
});
export type RewardInfo = z.infer<typeof rewardInfoSchema>;

/** What a `reward-train` job reports through job.updateProgress after every optimizer step. */
export const rewardTrainProgressSchema = z.strictObject({
  step: z.int().nonnegative(),
  steps: z.int().positive(),
  loss: z.number(),
  /** Fraction of the step's pairs with r_chosen > r_rejected. */
  accuracy: z.number(),
  lr: z.number(),
  gradNorm: z.number(),
});
export type RewardTrainProgress = z.infer<typeof rewardTrainProgressSchema>;

/** A `reward-train` job's return value: the candidate reward version and its held-out accuracy. */
export const rewardTrainJobResultSchema = z.strictObject({
  versionId: z.string(),
  checkpointDir: z.string(),
  pairs: z.int(),
  heldoutPairs: z.int(),
  heldoutAccuracy: z.number().nullable(),
  heldoutAccuracyBefore: z.number().nullable(),
  lossFirst: z.number(),
  lossLast: z.number(),
  /** True when the version row was written to the store's model_versions table. */
  registered: z.boolean(),
});
export type RewardTrainJobResult = z.infer<typeof rewardTrainJobResultSchema>;
