/**
 * Reviewers' moderation decisions as data: the label a reviewer puts on a completion's prompt or one of its choices
 * in the conversation view (harmful in given categories, or "not harmful" to overturn a verdict), the `moderation`
 * export line that the labels and approved `flag` feedback become, and the `moderation-train` job that retrains the
 * classifier on them. Shapes only: the table is libs/store, the training libs/moderation + apps/trainer.
 */
import { z } from 'zod';
import { MODERATION_CATEGORIES, MODERATION_DIRECTIONS } from './moderation.schemas';
import { SUBJECTS } from './subjects';
import { checkpointFolderNameSchema, trainingDataSourceSchema } from './trainer.schemas';

/** What the classifier learns (its heads): OpenAI's 13 categories and prompt injection; PII is the detectors' job. */
export const LABEL_CATEGORIES = [...MODERATION_CATEGORIES, 'prompt_injection'] as const;
export type LabelCategory = (typeof LABEL_CATEGORIES)[number];

export const MODERATION_LABEL_TARGETS = ['prompt', 'choice'] as const;
export type ModerationLabelTarget = (typeof MODERATION_LABEL_TARGETS)[number];
export const MODERATION_LABEL_VERDICTS = ['harmful', 'not_harmful'] as const;
export type ModerationLabelVerdict = (typeof MODERATION_LABEL_VERDICTS)[number];

/**
 * POST /admin/api/moderation-labels. `prompt` labels a message of the conversation (chat: `prompt_index` into its
 * messages, default the last user message) or a prompt (completions: into its prompts, default the first), `choice`
 * a choice's output. A harmful label names at least one
 * category; "not harmful" names none. A later label on the same text replaces the earlier one in exports (both stay
 * in the audit trail).
 */
export const moderationLabelCreateBodySchema = z
  .object({
    completion_id: z.string().min(1).max(128),
    target: z.enum(MODERATION_LABEL_TARGETS),
    choice_index: z.number().int().min(0).max(127).nullish(),
    prompt_index: z.number().int().min(0).max(127).nullish(),
    verdict: z.enum(MODERATION_LABEL_VERDICTS),
    categories: z
      .array(z.enum(LABEL_CATEGORIES))
      .max(LABEL_CATEGORIES.length)
      .refine((c) => new Set(c).size === c.length, 'lists a category twice')
      .default([]),
    note: z.string().max(4_096).optional(),
  })
  .strict()
  .superRefine((v, ctx) => {
    if (v.verdict === 'harmful' && v.categories.length === 0) ctx.addIssue({ code: 'custom', path: ['categories'], message: 'a harmful label names at least one category' });
    if (v.verdict === 'not_harmful' && v.categories.length > 0) ctx.addIssue({ code: 'custom', path: ['categories'], message: 'a "not harmful" label names no category' });
    if (v.target === 'choice' && (v.choice_index === undefined || v.choice_index === null)) ctx.addIssue({ code: 'custom', path: ['choice_index'], message: 'a choice label names its choice_index' });
    if (v.target === 'prompt' && v.choice_index !== undefined && v.choice_index !== null) ctx.addIssue({ code: 'custom', path: ['choice_index'], message: 'a prompt label has no choice_index' });
  });
export type ModerationLabelCreateBody = z.infer<typeof moderationLabelCreateBodySchema>;

/** A label as the admin API shows it (and the completion detail lists, oldest first). */
export const moderationLabelSchema = z.object({
  id: z.string(),
  completion_id: z.string(),
  target: z.enum(MODERATION_LABEL_TARGETS),
  choice_index: z.number().int().nullable(),
  prompt_index: z.number().int().nullable(),
  /** input for a prompt, output for a choice: the policy column the text was moderated under. */
  direction: z.enum(MODERATION_DIRECTIONS),
  verdict: z.enum(MODERATION_LABEL_VERDICTS),
  categories: z.array(z.enum(LABEL_CATEGORIES)),
  /** The text labelled, as it was when labelled. */
  text: z.string(),
  /** What moderation had decided on it then (its flagged or blocked categories); a label that disagrees overturns it. */
  moderation_categories: z.array(z.string()),
  overturns: z.boolean(),
  actor: z.string(),
  note: z.string().nullable(),
  created_at: z.string(),
});
export type ModerationLabel = z.infer<typeof moderationLabelSchema>;

/**
 * One line of a `moderation` export: a text with its categories (`[]`: benign). Source `reviewer` is a label,
 * `flag` an approved flag feedback naming a moderation category. `overturned`: moderation had flagged or blocked a
 * text the reviewer found harmless (hard benign data), or missed a harmful one.
 */
export const moderationExportLineSchema = z.object({
  text: z.string().min(1),
  direction: z.enum(MODERATION_DIRECTIONS),
  categories: z.array(z.enum(LABEL_CATEGORIES)),
  source: z.enum(['reviewer', 'flag']),
  overturned: z.boolean(),
  id: z.string(),
});
export type ModerationExportLine = z.infer<typeof moderationExportLineSchema>;

// ---- moderation-train (owned with apps/trainer/src/moderation-train.processor.ts) ----------------------------

/**
 * Data of a job on the `moderation-train` queue: retrains the moderation classifier on the seed set plus reviewed
 * data (a `moderation` export or JSONL of its lines; null: the seed set alone), evaluates candidate and active
 * version on one held-out split, publishes the candidate as a `moderation` version and, when `promote` says so and
 * it beats the active version there, promotes it.
 */
export const moderationTrainJobDataSchema = z.strictObject({
  data: trainingDataSourceSchema.nullable().default(null),
  /** Copies of each reviewed example in the training set: a reviewer's decision is rarer and closer to the traffic than seed text. */
  reviewedWeight: z.int().min(1).max(50).default(4),
  /** Fraction of the seed set and of the reviewed data held out for the comparison (seeded, stratified). */
  heldout: z.number().min(0.05).max(0.5).default(0.2),
  seed: z.int().nonnegative().default(1234),
  epochs: z.int().positive().max(200).optional(),
  promote: z.enum(['if-better', 'never']).default('if-better'),
  /** The loop run this job is a stage of. */
  parentRunId: z.string().nullable().default(null),
  outName: checkpointFolderNameSchema.optional(),
});
export type ModerationTrainJobData = z.infer<typeof moderationTrainJobDataSchema>;
export type ModerationTrainJobDataInput = z.input<typeof moderationTrainJobDataSchema>;

/** What a `moderation-train` job reports through job.updateProgress: epoch `step` of `steps` over every fit. */
export const moderationTrainProgressSchema = z.strictObject({
  step: z.int().nonnegative(),
  steps: z.int().positive(),
  loss: z.number(),
});
export type ModerationTrainProgress = z.infer<typeof moderationTrainProgressSchema>;

/** Held-out figures of one version: the layered moderator's macro F1 over the categories with support, and its false-positive rate on hard-benign text. */
export const moderationHeldoutSchema = z.strictObject({
  version: z.string(),
  macro_f1: z.number(),
  recall: z.number().nullable(),
  hard_benign_fpr: z.number().nullable(),
  reviewed_recall: z.number().nullable(),
  reviewed_accuracy: z.number().nullable(),
});
export type ModerationHeldout = z.infer<typeof moderationHeldoutSchema>;

export const moderationTrainJobResultSchema = z.strictObject({
  versionId: z.string(),
  checkpointDir: z.string(),
  examples: z.int(),
  reviewed: z.int(),
  candidate: moderationHeldoutSchema,
  active: moderationHeldoutSchema,
  promoted: z.boolean(),
  reasons: z.array(z.string()),
});
export type ModerationTrainJobResult = z.infer<typeof moderationTrainJobResultSchema>;

/**
 * `trainer.moderation` (and POST /admin/api/moderation/train, its body): export the reviewers' moderation data now
 * and queue a moderation-train job on it. Refused (409 over HTTP) while one is queued or running, or when there is
 * no reviewed data yet.
 */
export const MODERATION_TRAIN_SUBJECT = SUBJECTS.trainer.moderation;
export const moderationTrainStartSchema = z.strictObject({ promote: z.enum(['if-better', 'never']).default('if-better') });
export type ModerationTrainStart = z.infer<typeof moderationTrainStartSchema>;
export const moderationTrainStartedSchema = z.discriminatedUnion('ok', [
  z.strictObject({ ok: z.literal(true), job_id: z.string(), run_id: z.string(), export_id: z.string(), rows: z.int() }),
  z.strictObject({ ok: z.literal(false), code: z.enum(['already_running', 'no_training_data', 'store_unavailable']), message: z.string() }),
]);
export type ModerationTrainStarted = z.infer<typeof moderationTrainStartedSchema>;
