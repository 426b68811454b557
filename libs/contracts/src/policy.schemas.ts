/**
 * policy.generate / policy.cancel / policy.info payloads. A generate request carries text, chat
 * messages or token ids (the policy owns the tokenizer and chat template) plus sampling parameters;
 * its reply is a stream of frames: one `start`, many `token`, one `finish` per choice, then `end`.
 */
import { z } from 'zod';

/** A call the assistant made, as chat templates receive it (arguments parsed from OpenAI's JSON string). */
export const chatToolCallSchema = z.object({
  id: z.string(),
  type: z.literal('function'),
  function: z.object({ name: z.string(), arguments: z.unknown() }),
});
export type ChatToolCall = z.infer<typeof chatToolCallSchema>;

export const chatMessageSchema = z.object({
  role: z.enum(['system', 'user', 'assistant']),
  content: z.string(),
});
export type ChatMessage = z.infer<typeof chatMessageSchema>;

/** A turn of a generate request's chat: the plain roles, plus tool calls and tool results. */
export const promptMessageSchema = z.object({
  role: z.enum(['system', 'user', 'assistant', 'tool']),
  content: z.string(),
  /** Assistant turns that called tools. */
  tool_calls: z.array(chatToolCallSchema).optional(),
  /** Tool turns: the call they answer, and the function's name. */
  tool_call_id: z.string().optional(),
  name: z.string().optional(),
});
export type PromptMessage = z.infer<typeof promptMessageSchema>;

/** A function the model may call, as transformers passes `tools` to a chat template. */
export const chatToolSchema = z.object({
  type: z.literal('function'),
  function: z.object({
    name: z.string(),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()),
  }),
});
export type ChatTool = z.infer<typeof chatToolSchema>;

/**
 * How a model family writes tool calls: Hermes `<tool_call>{...}</tool_call>` (Qwen, SmolLM3, and the default for
 * templates that do not say), Llama 3.x JSON (`<|python_tag|>` optional), Mistral `[TOOL_CALLS][...]`.
 */
export const toolCallFormatSchema = z.enum(['hermes', 'llama3_json', 'mistral']);
export type ToolCallFormat = z.infer<typeof toolCallFormatSchema>;

/**
 * What the sampler must keep to (structured outputs): any JSON object, a JSON schema (checked by
 * checkJsonSchema), or tool calls in the policy's format ('auto': text, or calls once the model opens one;
 * 'required': only calls, at least one). A named tool_choice is 'required' with that one tool.
 */
export const outputConstraintSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('json_object') }),
  z.object({ kind: z.literal('json_schema'), schema: z.record(z.string(), z.unknown()), strict: z.boolean().default(true) }),
  z.object({
    kind: z.literal('tool_calls'),
    /** `strict`: the function's strict flag (OpenAI): objects without additionalProperties allow no other keys. */
    tools: z.array(z.object({ name: z.string().min(1), parameters: z.record(z.string(), z.unknown()), strict: z.boolean().default(false) })).min(1),
    mode: z.enum(['auto', 'required']),
    parallel: z.boolean().default(true),
  }),
]);
export type OutputConstraint = z.infer<typeof outputConstraintSchema>;

export const generateInputSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('text'), text: z.string(), addSpecialTokens: z.boolean().default(true) }),
  z.object({
    kind: z.literal('chat'),
    messages: z.array(promptMessageSchema).min(1),
    /** Extra variables for the chat template render (vLLM's chat_template_kwargs, e.g. enable_thinking). */
    templateKwargs: z.record(z.string(), z.unknown()).optional(),
    /** The request's tools, rendered into the prompt by the template (or the Hermes preamble when it has none). */
    tools: z.array(chatToolSchema).optional(),
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
  /** Structured output: the sampler only draws tokens that keep the output valid. */
  constraint: outputConstraintSchema.optional(),
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
  /**
   * What the weights are served as (FLYWHEEL_MODEL_DTYPE, `auto` resolved: a quantized GGUF serves its own types,
   * named here by the type most matrices are stored in; a K-quant mix asked for by name, `q4_k_m`; `weightTypes`
   * has the whole mix).
   */
  dtype: z.enum(['f32', 'bf16', 'q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q4_k', 'q5_k', 'q6_k', 'q4_k_m', 'q5_k_m']),
  /** Matrices per stored type, e.g. { q4_k: 9, q6_k: 3 } for a Q4_K_M file. */
  weightTypes: z.record(z.string(), z.number().int()).optional(),
  instanceId: z.string(),
  hasChatTemplate: z.boolean(),
  /** How this model writes tool calls (detected from its chat template, or configured); the gateway parses by it. */
  toolCallFormat: toolCallFormatSchema.default('hermes'),
  /**
   * How the model's thinking is marked: `think` = `<think>…</think>` (split off as reasoning_content), with
   * `startsOpen` when the chat template opens the block in the prompt (DeepSeek-R1 style); null = not a reasoning model.
   */
  reasoning: z.object({ format: z.literal('think'), startsOpen: z.boolean() }).nullable().default(null),
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
    messages: z.array(promptMessageSchema).min(1),
    tools: z.array(chatToolSchema).optional(),
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
