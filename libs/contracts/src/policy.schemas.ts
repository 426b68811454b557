/**
 * policy.generate / policy.cancel / policy.info payloads. A generate request carries text, chat
 * messages or token ids (the policy owns the tokenizer and chat template) plus sampling parameters;
 * its reply is a stream of frames: one `start`, many `token`, one `finish` per choice, then `end`.
 */
import { z } from 'zod';

export const chatMessageSchema = z.object({
  role: z.enum(['system', 'user', 'assistant']),
  content: z.string(),
});
export type ChatMessage = z.infer<typeof chatMessageSchema>;

export const generateInputSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('text'), text: z.string(), addSpecialTokens: z.boolean().default(true) }),
  z.object({
    kind: z.literal('chat'),
    messages: z.array(chatMessageSchema).min(1),
    /** Extra variables for the chat template render (vLLM's chat_template_kwargs, e.g. enable_thinking). */
    templateKwargs: z.record(z.string(), z.unknown()).optional(),
  }),
  z.object({ kind: z.literal('tokens'), tokenIds: z.array(z.number().int().nonnegative()).min(1) }),
]);
export type GenerateInput = z.infer<typeof generateInputSchema>;

export const samplingParamsSchema = z.object({
  /** 0 = greedy. */
  temperature: z.number().min(0).max(2).default(1),
  topP: z.number().gt(0).max(1).default(1),
  /** 0 = off. */
  topK: z.number().int().min(0).default(0),
  seed: z.number().int().optional(),
  /** Absent: up to the end of the context window. */
  maxTokens: z.number().int().positive().optional(),
  stop: z.array(z.string().min(1)).max(4).default([]),
  presencePenalty: z.number().min(-2).max(2).default(0),
  frequencyPenalty: z.number().min(-2).max(2).default(0),
  /** token id (as a decimal string, as in OpenAI's API) → bias added to its logit. */
  logitBias: z.record(z.string().regex(/^\d+$/), z.number().min(-100).max(100)).default({}),
  logprobs: z.boolean().default(false),
  topLogprobs: z.number().int().min(0).max(20).default(0),
  n: z.number().int().min(1).max(16).default(1),
  /** vLLM extensions; absent = off (each is optional so older senders stay valid). min_p after temperature. */
  minP: z.number().min(0).max(1).optional(),
  /** HF/vLLM repetition penalty over prompt + output tokens; absent or 1 = off. */
  repetitionPenalty: z.number().gt(0).max(100).optional(),
  /** Extra stop ids on top of the model's EOS. */
  stopTokenIds: z.array(z.number().int().nonnegative()).max(64).optional(),
  /** EOS does not end the choice. */
  ignoreEos: z.boolean().optional(),
  /** EOS and stopTokenIds are masked until this many tokens were generated. */
  minTokens: z.number().int().nonnegative().optional(),
  /** false: special tokens' text stays in the output (absent = true). */
  skipSpecialTokens: z.boolean().optional(),
});
export type SamplingParams = z.infer<typeof samplingParamsSchema>;

export const generateRequestSchema = z.object({
  requestId: z.string().min(1).max(200),
  input: generateInputSchema,
  sampling: samplingParamsSchema.prefault({}),
  /** Echo the prompt text in the start frame (completions `echo`). */
  echo: z.boolean().default(false),
});
export type GenerateRequest = z.infer<typeof generateRequestSchema>;
export type GenerateRequestInput = z.input<typeof generateRequestSchema>;

export const topLogprobSchema = z.object({ token: z.string(), tokenId: z.number().int(), logprob: z.number() });
export const tokenLogprobSchema = topLogprobSchema.extend({ topLogprobs: z.array(topLogprobSchema) });
export type TokenLogprob = z.infer<typeof tokenLogprobSchema>;

export const finishReasonSchema = z.enum(['stop', 'length', 'cancelled']);
export type FinishReason = z.infer<typeof finishReasonSchema>;

export const usageSchema = z.object({ promptTokens: z.number().int(), completionTokens: z.number().int() });
export type Usage = z.infer<typeof usageSchema>;

/** One choice's new tokens: their text, ids and (when asked for) logprobs, one entry per id. */
export const tokenDeltaSchema = z.object({
  choice: z.number().int(),
  text: z.string(),
  tokenIds: z.array(z.number().int()),
  logprobs: z.array(tokenLogprobSchema).optional(),
  finishReason: finishReasonSchema.optional(),
});
export type TokenDelta = z.infer<typeof tokenDeltaSchema>;

export const generateFrameSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('start'),
    requestId: z.string(),
    model: z.string(),
    policyVersion: z.string(),
    promptTokens: z.number().int(),
    promptText: z.string().optional(),
  }),
  /**
   * Everything the engine produced for the request since the last frame, in order: one step's token for each
   * running choice, or several steps' when the policy's sender fell behind (coalesced, never dropped or
   * reordered). An entry with a finishReason ends its choice (its text and ids may be empty).
   */
  z.object({ type: z.literal('tokens'), tokens: z.array(tokenDeltaSchema).min(1) }),
  z.object({
    type: z.literal('end'),
    usage: usageSchema,
    /** Milliseconds from the policy receiving the request: first token (null if none) and the end. */
    timings: z.object({ ttftMs: z.number().nullable(), e2eMs: z.number() }),
  }),
]);
export type GenerateFrame = z.infer<typeof generateFrameSchema>;

/**
 * policy.cancel is an event (publish, no reply) that every replica receives: only the one running the
 * request acts on it, and a caller never waits on replicas that do not have it.
 */
export const cancelRequestSchema = z.object({ requestId: z.string().min(1).max(200) });
export type CancelRequest = z.infer<typeof cancelRequestSchema>;

export const policyInfoRequestSchema = z.object({}).strict();
export const policyInfoSchema = z.object({
  model: z.string(),
  policyVersion: z.string(),
  /** Seconds since the epoch when this replica loaded the model (OpenAI's `created`). */
  loadedAt: z.number().int(),
  contextLength: z.number().int(),
  vocabSize: z.number().int(),
  dtype: z.enum(['f32', 'bf16']),
  instanceId: z.string(),
  hasChatTemplate: z.boolean(),
});
export type PolicyInfo = z.infer<typeof policyInfoSchema>;

/**
 * policy.tokenize / policy.detokenize (vLLM's /tokenize and /detokenize): the policy owns the tokenizer
 * and the chat template, so the gateway asks it. Chat input is rendered exactly as for a generation.
 */
export const tokenizeRequestPayloadSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('text'), text: z.string(), addSpecialTokens: z.boolean().default(true) }),
  z.object({
    kind: z.literal('chat'),
    messages: z.array(chatMessageSchema).min(1),
    addGenerationPrompt: z.boolean().default(true),
    addSpecialTokens: z.boolean().default(false),
    templateKwargs: z.record(z.string(), z.unknown()).default({}),
  }),
]);
export type TokenizeRequestPayload = z.infer<typeof tokenizeRequestPayloadSchema>;
export type TokenizeRequestPayloadInput = z.input<typeof tokenizeRequestPayloadSchema>;
export const tokenizeResultSchema = z.object({ tokenIds: z.array(z.number().int()), maxModelLen: z.number().int() });
export type TokenizeResult = z.infer<typeof tokenizeResultSchema>;

export const detokenizeRequestPayloadSchema = z.object({ tokenIds: z.array(z.number().int().nonnegative()) });
export type DetokenizeRequestPayload = z.infer<typeof detokenizeRequestPayloadSchema>;
export const detokenizeResultSchema = z.object({ text: z.string() });
export type DetokenizeResult = z.infer<typeof detokenizeResultSchema>;

/** Every token delta of a frame stream, in order (a test's or a benchmark's flat view of 'tokens' frames). */
export function tokenDeltasOf(frames: readonly GenerateFrame[]): TokenDelta[] {
  return frames.flatMap((f) => (f.type === 'tokens' ? f.tokens : []));
}
