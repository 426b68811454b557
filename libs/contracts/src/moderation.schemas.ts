/**
 * moderation.check / moderation.info payloads. The reply keeps OpenAI's moderation shape exact
 * (`{id, model, results}` with its 13 categories) and puts Flywheel's own verdicts (policy action,
 * PII, prompt injection, rule hits) in the parallel `flywheel_results` array, index for index.
 * Offsets are UTF-16 code-unit indices into the input string (what String.prototype.slice takes).
 */
import { z } from 'zod';

/** OpenAI's moderation categories, in OpenAI's order. */
export const MODERATION_CATEGORIES = [
  'harassment',
  'harassment/threatening',
  'hate',
  'hate/threatening',
  'illicit',
  'illicit/violent',
  'self-harm',
  'self-harm/intent',
  'self-harm/instructions',
  'sexual',
  'sexual/minors',
  'violence',
  'violence/graphic',
] as const;
export type ModerationCategory = (typeof MODERATION_CATEGORIES)[number];

/** Flywheel's own categories, reported outside the OpenAI shape. */
export const EXTRA_MODERATION_CATEGORIES = ['pii', 'prompt_injection'] as const;
export type ExtraModerationCategory = (typeof EXTRA_MODERATION_CATEGORIES)[number];

export const ALL_MODERATION_CATEGORIES = [...MODERATION_CATEGORIES, ...EXTRA_MODERATION_CATEGORIES] as const;
export type AnyModerationCategory = ModerationCategory | ExtraModerationCategory;

export const MODERATION_DIRECTIONS = ['input', 'output'] as const;
export type ModerationDirection = (typeof MODERATION_DIRECTIONS)[number];

export const MODERATION_ACTIONS = ['allow', 'flag', 'block'] as const;
export type ModerationAction = (typeof MODERATION_ACTIONS)[number];

/** Largest single text and batch one request may carry; the gateway's body limit is the outer bound. */
export const MODERATION_MAX_TEXT_CHARS = 65_536;
export const MODERATION_MAX_BATCH = 64;

const moderationTextSchema = z.string().max(MODERATION_MAX_TEXT_CHARS);

export const moderationRequestSchema = z
  .object({
    input: z.union([moderationTextSchema, z.array(moderationTextSchema).min(1).max(MODERATION_MAX_BATCH)]),
    /** Accepted for OpenAI compatibility; the service answers with its own model id. */
    model: z.string().max(200).optional(),
    /** Which policy column applies: a user's prompt (`input`) or generated text (`output`). */
    direction: z.enum(MODERATION_DIRECTIONS).default('input'),
  })
  .strict();
export type ModerationRequest = z.input<typeof moderationRequestSchema>;
export type ParsedModerationRequest = z.infer<typeof moderationRequestSchema>;

const categoryRecord = <T extends z.ZodType>(value: T) =>
  z.object(Object.fromEntries(MODERATION_CATEGORIES.map((c) => [c, value])) as Record<ModerationCategory, T>);

export const moderationResultSchema = z.object({
  flagged: z.boolean(),
  categories: categoryRecord(z.boolean()),
  category_scores: categoryRecord(z.number().min(0).max(1)),
});
export type ModerationResult = z.infer<typeof moderationResultSchema>;

export const PII_TYPES = ['email', 'phone', 'credit_card', 'iban', 'api_key', 'private_key'] as const;
export type PiiType = (typeof PII_TYPES)[number];

export const piiEntitySchema = z.object({
  type: z.enum(PII_TYPES),
  start: z.number().int().nonnegative(),
  end: z.number().int().nonnegative(),
});
export type PiiEntity = z.infer<typeof piiEntitySchema>;

/** A lexicon term or pattern that fired: which rule, for which category, where in the input. */
export const ruleMatchSchema = z.object({
  category: z.enum(ALL_MODERATION_CATEGORIES),
  rule: z.string(),
  start: z.number().int().nonnegative(),
  end: z.number().int().nonnegative(),
  score: z.number().min(0).max(1),
});
export type RuleMatch = z.infer<typeof ruleMatchSchema>;

export const flywheelModerationResultSchema = z.object({
  direction: z.enum(MODERATION_DIRECTIONS),
  /** The policy's verdict over all 15 categories: block beats flag beats allow. */
  action: z.enum(MODERATION_ACTIONS),
  blocked_categories: z.array(z.enum(ALL_MODERATION_CATEGORIES)),
  flagged_categories: z.array(z.enum(ALL_MODERATION_CATEGORIES)),
  pii: z.object({ flagged: z.boolean(), score: z.number().min(0).max(1), entities: z.array(piiEntitySchema) }),
  prompt_injection: z.object({ flagged: z.boolean(), score: z.number().min(0).max(1) }),
  matches: z.array(ruleMatchSchema),
});
export type FlywheelModerationResult = z.infer<typeof flywheelModerationResultSchema>;

export const moderationResponseSchema = z.object({
  id: z.string(),
  model: z.string(),
  results: z.array(moderationResultSchema),
  flywheel_results: z.array(flywheelModerationResultSchema),
});
export type ModerationResponse = z.infer<typeof moderationResponseSchema>;

export const moderationInfoRequestSchema = z.object({}).strict();
export const moderationInfoSchema = z.object({
  model: z.string(),
  classifier: z.object({ buckets: z.number().int(), heads: z.array(z.string()), trainedOn: z.number().int(), seed: z.number().int() }),
  lexicon: z.object({ version: z.string(), rules: z.number().int() }),
  policy: z.object({ name: z.string() }),
});
export type ModerationInfo = z.infer<typeof moderationInfoSchema>;
