/**
 * The OpenAI-compatible HTTP API as wire shapes: request bodies of /v1/chat/completions and
 * /v1/completions (snake_case, exactly as clients send them), the objects the gateway answers with,
 * and the error body. Validation that needs the served model (vocab size, model name) is not here.
 */
import { z } from 'zod';

const stopSchema = z.union([z.string(), z.array(z.string()).max(4)]).nullish();
const probability = z.number().min(0).max(1);
const penalty = z.number().min(-2).max(2);
/** Token id as a decimal string → bias in [-100, 100], as OpenAI takes it. */
const logitBiasSchema = z.record(z.string(), z.number().min(-100).max(100)).nullish();
const streamOptionsSchema = z.object({ include_usage: z.boolean().nullish() }).nullish();

/** Parameters both endpoints share. Unknown top-level keys are rejected, as OpenAI does. */
const samplingFields = {
  model: z.string().min(1),
  stream: z.boolean().nullish(),
  stream_options: streamOptionsSchema,
  n: z.number().int().min(1).max(16).nullish(),
  stop: stopSchema,
  max_tokens: z.number().int().positive().nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: probability.nullish(),
  /** vLLM extension; 0 or -1 = off. */
  top_k: z.number().int().min(-1).nullish(),
  seed: z.number().int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER).nullish(),
  presence_penalty: penalty.nullish(),
  frequency_penalty: penalty.nullish(),
  logit_bias: logitBiasSchema,
  user: z.string().max(256).nullish(),
  /** vLLM extensions, with vLLM's names and semantics. */
  /** Drop tokens whose probability (after temperature) is below min_p × the top token's; 0 = off. */
  min_p: probability.nullish(),
  /** HF/vLLM: logits of tokens in prompt or output divided by it when positive, multiplied when negative; 1 = off. */
  repetition_penalty: z.number().gt(0).max(100).nullish(),
  /** Extra stop token ids; the stop token adds no text. */
  stop_token_ids: z.array(z.number().int().nonnegative()).max(64).nullish(),
  /** Keep generating past EOS (up to max_tokens). */
  ignore_eos: z.boolean().nullish(),
  /** EOS and stop_token_ids are masked until this many tokens were generated. */
  min_tokens: z.number().int().nonnegative().nullish(),
  /** false: special tokens' text stays in the output. Default true. */
  skip_special_tokens: z.boolean().nullish(),
  /** Accepted and ignored: they change nothing about a generation here. */
  metadata: z.record(z.string(), z.string()).nullish(),
  store: z.boolean().nullish(),
  service_tier: z.string().nullish(),
};

export const chatContentPartSchema = z.object({
  type: z.literal('text', { error: "only content parts of type 'text' are supported" }),
  text: z.string(),
});

/** An assistant turn's call, as OpenAI sends it back in the history (arguments: a JSON string). */
export const chatRequestToolCallSchema = z.object({
  id: z.string().min(1),
  type: z.literal('function'),
  function: z.object({ name: z.string().min(1), arguments: z.string() }),
});

export const chatRequestMessageSchema = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: z.union([z.string(), z.array(chatContentPartSchema)]).nullish(),
  name: z.string().nullish(),
  tool_calls: z.array(chatRequestToolCallSchema).nullish(),
  function_call: z.unknown().optional(),
  tool_call_id: z.string().nullish(),
  /** Sent back by some clients with an assistant turn; it changes nothing here. */
  refusal: z.string().nullish(),
});
export type ChatRequestMessage = z.infer<typeof chatRequestMessageSchema>;

/** OpenAI's function-name rule. */
const functionNameSchema = z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, underscores or dashes');

export const chatRequestToolSchema = z.object({
  type: z.literal('function', { error: "only tools of type 'function' are supported" }),
  function: z.object({
    name: functionNameSchema,
    description: z.string().nullish(),
    /** A JSON Schema object; absent = no parameters. Checked by checkJsonSchema (400 naming the keyword). */
    parameters: z.record(z.string(), z.unknown()).nullish(),
    strict: z.boolean().nullish(),
  }),
});
export type ChatRequestTool = z.infer<typeof chatRequestToolSchema>;

export const toolChoiceSchema = z.union([
  z.enum(['none', 'auto', 'required']),
  z.object({ type: z.literal('function'), function: z.object({ name: z.string() }) }),
]);

export const responseFormatSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }),
  z.object({ type: z.literal('json_object') }),
  z.object({
    type: z.literal('json_schema'),
    json_schema: z.object({
      name: functionNameSchema,
      description: z.string().nullish(),
      /** Absent: any JSON object. */
      schema: z.record(z.string(), z.unknown()).nullish(),
      strict: z.boolean().nullish(),
    }),
  }),
]);

export const chatCompletionRequestSchema = z.strictObject({
  ...samplingFields,
  messages: z.array(chatRequestMessageSchema).min(1),
  max_completion_tokens: z.number().int().positive().nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  response_format: responseFormatSchema.nullish(),
  tools: z.array(chatRequestToolSchema).max(128).nullish(),
  tool_choice: toolChoiceSchema.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  functions: z.array(z.unknown()).nullish(),
  function_call: z.unknown().optional(),
  modalities: z.array(z.string()).nullish(),
  /** vLLM extension: extra variables for the chat template render (e.g. `enable_thinking`). */
  chat_template_kwargs: z.record(z.string(), z.unknown()).nullish(),
});
export type ChatCompletionRequest = z.infer<typeof chatCompletionRequestSchema>;

export const completionRequestSchema = z.strictObject({
  ...samplingFields,
  prompt: z.union([
    z.string(),
    z.array(z.string()).min(1),
    z.array(z.number().int().nonnegative()).min(1),
    z.array(z.array(z.number().int().nonnegative()).min(1)).min(1),
  ]),
  echo: z.boolean().nullish(),
  /** Legacy completions: how many top alternatives per token (0..20; OpenAI allows up to 5). */
  logprobs: z.number().int().min(0).max(20).nullish(),
  best_of: z.number().int().min(1).max(16).nullish(),
  suffix: z.string().nullish(),
});
export type CompletionRequest = z.infer<typeof completionRequestSchema>;

/**
 * vLLM's POST /tokenize: a completion prompt, or chat messages rendered by the model's template. The
 * shape is vLLM's (a strict union: one of `prompt` or `messages`).
 */
export const tokenizeCompletionRequestSchema = z.strictObject({
  model: z.string().min(1).nullish(),
  prompt: z.string(),
  /** Default true: BOS and friends as for a completion. */
  add_special_tokens: z.boolean().nullish(),
});
export const tokenizeChatRequestSchema = z.strictObject({
  model: z.string().min(1).nullish(),
  messages: z.array(chatRequestMessageSchema).min(1),
  /** Default true. */
  add_generation_prompt: z.boolean().nullish(),
  /** Default false: the template writes its special tokens itself. */
  add_special_tokens: z.boolean().nullish(),
  chat_template_kwargs: z.record(z.string(), z.unknown()).nullish(),
});
export const tokenizeRequestSchema = z.union([tokenizeCompletionRequestSchema, tokenizeChatRequestSchema]);
export type TokenizeRequest = z.infer<typeof tokenizeRequestSchema>;

export interface TokenizeResponse {
  count: number;
  max_model_len: number;
  tokens: number[];
}

export const detokenizeRequestSchema = z.strictObject({
  model: z.string().min(1).nullish(),
  tokens: z.array(z.number().int().nonnegative()),
});
export type DetokenizeRequest = z.infer<typeof detokenizeRequestSchema>;

export interface DetokenizeResponse {
  prompt: string;
}

// ---- responses -------------------------------------------------------------------------------------

/** content_filter: output moderation cut the choice; the text ends before the blocked span. tool_calls: it called tools. */
export type OpenAiFinishReason = 'stop' | 'length' | 'content_filter' | 'tool_calls';

/** A parsed tool call in a response (arguments: the JSON text the model wrote). */
export interface ChatToolCallOut {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** One streamed fragment of a tool call: the first carries id, type and name; the rest argument text. */
export interface ChatToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function?: { name?: string; arguments?: string };
}

export interface OpenAiUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface ChatTopLogprob {
  token: string;
  logprob: number;
  bytes: number[];
}
export interface ChatTokenLogprob extends ChatTopLogprob {
  top_logprobs: ChatTopLogprob[];
}
export interface ChatChoiceLogprobs {
  content: ChatTokenLogprob[];
  refusal: null;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  system_fingerprint: string;
  choices: Array<{
    index: number;
    /** reasoning_content: a reasoning model's thinking (vLLM's and DeepSeek's field), when the model has one. */
    message: { role: 'assistant'; content: string | null; refusal: null; reasoning_content?: string | null; tool_calls?: ChatToolCallOut[] };
    logprobs: ChatChoiceLogprobs | null;
    finish_reason: OpenAiFinishReason;
  }>;
  usage: OpenAiUsage;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  system_fingerprint: string;
  choices: Array<{
    index: number;
    delta: { role?: 'assistant'; content?: string; reasoning_content?: string; refusal?: null; tool_calls?: ChatToolCallDelta[] };
    logprobs: ChatChoiceLogprobs | null;
    finish_reason: OpenAiFinishReason | null;
  }>;
  /** Present (null until the last chunk) only when stream_options.include_usage is set. */
  usage?: OpenAiUsage | null;
}

export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Array<Record<string, number>>;
  text_offset: number[];
}

export interface TextCompletion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  system_fingerprint: string;
  choices: Array<{
    index: number;
    text: string;
    logprobs: CompletionLogprobs | null;
    finish_reason: OpenAiFinishReason | null;
  }>;
  usage?: OpenAiUsage | null;
}

export interface OpenAiModel {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  /** Flywheel extensions: what serves this model right now. */
  policy_version: string;
  context_length: number;
  /** The weight type served (e.g. q4_k for a Q4_K_M file) and the matrices per stored type. */
  dtype?: string;
  weight_types?: Record<string, number>;
}

export interface OpenAiModelList {
  object: 'list';
  data: OpenAiModel[];
}

// ---- errors ----------------------------------------------------------------------------------------

export const openAiErrorTypeSchema = z.enum([
  'invalid_request_error',
  'authentication_error',
  'permission_error',
  'not_found_error',
  'requests',
  'tokens',
  'server_error',
]);
export type OpenAiErrorType = z.infer<typeof openAiErrorTypeSchema>;

export const openAiErrorBodySchema = z.object({
  error: z.object({
    message: z.string(),
    type: openAiErrorTypeSchema,
    param: z.string().nullable(),
    code: z.string().nullable(),
    /** Flywheel extension on content_policy_violation: the moderation categories that blocked the prompt. */
    categories: z.array(z.string()).optional(),
  }),
});
export type OpenAiErrorBody = z.infer<typeof openAiErrorBodySchema>;
