/**
 * The durable record of one served completion, published by the gateway on JetStream stream
 * COMPLETIONS (subject `flywheel.completions.<id>`, header Nats-Msg-Id = id) before its response ends,
 * for the store writer to persist. The id is the one the API returned, and the feedback API's key.
 */
import { z } from 'zod';
import { ALL_MODERATION_CATEGORIES, MODERATION_ACTIONS, piiEntitySchema, ruleMatchSchema } from './moderation.schemas';
import { chatMessageSchema } from './policy.schemas';
import { STREAMS } from './subjects';

export const completionRecordSubject = (id: string): string => `${STREAMS.completions.subjects[0].replace(/>$/, '')}${id}`;

export const completionRecordChoiceSchema = z.object({
  index: z.number().int().nonnegative(),
  /** Index of the prompt this choice answers (completions with an array of prompts; 0 for chat). */
  promptIndex: z.number().int().nonnegative(),
  /** The text the client received: cut where output moderation blocked it (finishReason content_filter). */
  text: z.string(),
  /** null when the response ended before this choice finished (client gone, error). */
  finishReason: z.enum(['stop', 'length', 'content_filter']).nullable(),
  /** Every token the policy generated for this choice, the withheld tail of a filtered choice included. */
  tokenIds: z.array(z.number().int()),
  /** Sampled-token logprobs, when the request asked for them (aligned with tokenIds). */
  logprobs: z.array(z.number()).nullable(),
});
export type CompletionRecordChoice = z.infer<typeof completionRecordChoiceSchema>;

/** One moderation verdict, reduced to what the flywheel needs to review or retrain on it. */
export const moderationVerdictSummarySchema = z.object({
  action: z.enum(MODERATION_ACTIONS),
  blockedCategories: z.array(z.enum(ALL_MODERATION_CATEGORIES)),
  flaggedCategories: z.array(z.enum(ALL_MODERATION_CATEGORIES)),
  /** Score of each of the 15 categories (the max over the texts or stream windows checked). */
  scores: z.partialRecord(z.enum(ALL_MODERATION_CATEGORIES), z.number().min(0).max(1)),
  /** Rule hits and PII spans; offsets are UTF-16 indices into the checked text (see `text` on input). */
  matches: z.array(ruleMatchSchema.extend({ text: z.number().int().nonnegative().optional() })),
  pii: z.array(piiEntitySchema.extend({ text: z.number().int().nonnegative().optional() })),
});
export type ModerationVerdictSummary = z.infer<typeof moderationVerdictSummarySchema>;

export const completionModerationSchema = z.object({
  /**
   * The prompt check before generation, over every message (chat) or string prompt (completions);
   * `text` on a match is the message or prompt index. null: nothing to check (token-id prompts).
   */
  input: moderationVerdictSummarySchema
    .extend({
      model: z.string(),
      /** Who checked it: the moderation service over NATS, or the gateway's in-process moderator when no service answered. */
      source: z.enum(['service', 'local']),
    })
    .nullable(),
  /** The streamed output check, one per choice in index order; offsets index the choice's generated text. */
  output: z.array(
    moderationVerdictSummarySchema.extend({
      index: z.number().int().nonnegative(),
      /** Where the text was cut (start of the blocking match), null when it was not. */
      cutOffset: z.number().int().nonnegative().nullable(),
      /** Characters the policy generated for the choice, withheld tail included. */
      generatedChars: z.number().int().nonnegative(),
    }),
  ),
});
export type CompletionModeration = z.infer<typeof completionModerationSchema>;

export const completionRecordSchema = z.object({
  id: z.string().min(1),
  endpoint: z.enum(['chat.completions', 'completions']),
  /** completed: the client got the whole response; cancelled: it went away; failed: an error ended it. */
  status: z.enum(['completed', 'cancelled', 'failed']),
  error: z.object({ code: z.string().nullable(), message: z.string() }).nullable(),
  createdAt: z.string(),
  model: z.string(),
  policyVersion: z.string(),
  /** The request body as the gateway validated it (snake_case, OpenAI's names). */
  request: z.record(z.string(), z.unknown()),
  /** Chat: the conversation as the policy saw it (developer → system, text parts joined). */
  messages: z.array(chatMessageSchema).nullable(),
  /** Completions: the prompts, as text, or as token ids when sent as ids. */
  prompts: z.array(z.union([z.string(), z.array(z.number().int())])).nullable(),
  choices: z.array(completionRecordChoiceSchema),
  usage: z.object({
    promptTokens: z.number().int().nonnegative(),
    completionTokens: z.number().int().nonnegative(),
    totalTokens: z.number().int().nonnegative(),
  }),
  latencies: z.object({
    /** Request arrival to the first content byte written to the client; null if none was. */
    ttftMs: z.number().nullable(),
    /** Request arrival to the record's publication. */
    e2eMs: z.number(),
    /** As the policy measured them from its receipt of the request (the largest over several prompts). */
    policyTtftMs: z.number().nullable(),
    policyE2eMs: z.number().nullable(),
  }),
  stream: z.boolean(),
  user: z.string().nullable(),
  /** sha256-derived id of the API key (never the key). */
  keyId: z.string(),
  requestId: z.string(),
  gatewayInstanceId: z.string(),
  /** Absent on records from gateways that predate moderation. */
  moderation: completionModerationSchema.optional(),
});
export type CompletionRecord = z.infer<typeof completionRecordSchema>;
