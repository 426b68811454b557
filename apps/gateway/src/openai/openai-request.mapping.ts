/**
 * From an OpenAI request body to the policy's generate requests: parse (400 naming the parameter),
 * refuse what is not supported with a clear message, check what needs the served model (its name,
 * vocabulary, context, chat template), and build one GenerateRequest per prompt (OpenAI's parameters and
 * vLLM's sampling extensions). Plain functions.
 */
import {
  chatCompletionRequestSchema,
  completionRequestSchema,
  type ChatCompletionRequest,
  type ChatMessage,
  type CompletionRequest,
  type GenerateRequestInput,
  type PolicyInfo,
  type ToolCallFormat,
} from '@flywheel/contracts';
import { fromZodError, OpenAiError, type PromptParam } from '../http/openai-error';
import { planAgentParts } from './structured-output.plan';

export type Endpoint = 'chat.completions' | 'completions';

/** Everything needed to run one API request and shape its answer. */
export interface GenerationPlan {
  endpoint: Endpoint;
  promptParam: PromptParam;
  /** chatcmpl-… / cmpl-…: response id, record id, and (with -<i> per prompt) the policy request ids. */
  id: string;
  /** Unix seconds. */
  created: number;
  model: string;
  stream: boolean;
  includeUsage: boolean;
  /** Choices per prompt; response choice index = promptIndex * n + choice. */
  n: number;
  echo: boolean;
  /** Chat: token logprobs objects; completions: the legacy arrays; none: not asked. */
  logprobs: 'none' | 'chat' | 'completions';
  requests: GenerateRequestInput[];
  /** Chat turns as plain text (tool calls and results written out): what moderation reads and the record keeps. */
  messages: ChatMessage[] | null;
  /** Tool calls are parsed out of the output in this format; null when the request offered no tools. */
  toolCallFormat: ToolCallFormat | null;
  /** Chat with a reasoning model: its thinking is split off as reasoning_content. */
  reasoning: { startsOpen: boolean } | null;
  prompts: Array<string | number[]> | null;
  user: string | null;
  /** The validated body, for the completion record. */
  body: Record<string, unknown>;
}

/** Most choices one request may ask for (prompts × n); each is a sequence in the policy. */
export const MAX_CHOICES = 128;
const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;

export function parseChatCompletionBody(body: unknown): ChatCompletionRequest {
  const parsed = chatCompletionRequestSchema.safeParse(body);
  if (!parsed.success) throw fromZodError(parsed.error, body);
  return parsed.data;
}

export function parseCompletionBody(body: unknown): CompletionRequest {
  const parsed = completionRequestSchema.safeParse(body);
  if (!parsed.success) throw fromZodError(parsed.error, body);
  return parsed.data;
}

const unsupported = (param: string, what: string) =>
  OpenAiError.invalid(`'${param}' is not supported by this server: ${what}.`, param, 'unsupported_parameter');

export function checkModel(requested: string, info: PolicyInfo): void {
  if (requested !== info.model) {
    throw new OpenAiError(
      404,
      'invalid_request_error',
      `The model \`${requested}\` does not exist or you do not have access to it. This server serves \`${info.model}\`.`,
      'model',
      'model_not_found',
    );
  }
}

type SharedRequest = Pick<
  ChatCompletionRequest,
  | 'stream'
  | 'stream_options'
  | 'n'
  | 'stop'
  | 'temperature'
  | 'top_p'
  | 'top_k'
  | 'seed'
  | 'presence_penalty'
  | 'frequency_penalty'
  | 'logit_bias'
  | 'min_p'
  | 'repetition_penalty'
  | 'stop_token_ids'
  | 'ignore_eos'
  | 'min_tokens'
  | 'skip_special_tokens'
>;

function sharedChecks(req: SharedRequest): void {
  if (req.stream_options != null && req.stream !== true) {
    throw OpenAiError.invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.", 'stream_options');
  }
}

function samplingOf(req: SharedRequest, info: PolicyInfo, maxTokens: { value: number | null; param: string }, logprobs: boolean, topLogprobs: number) {
  if (maxTokens.value !== null && maxTokens.value >= info.contextLength) {
    throw OpenAiError.invalid(
      `This model's maximum context length is ${info.contextLength} tokens. However, you requested ${maxTokens.value} tokens for the completion alone. Please reduce '${maxTokens.param}'.`,
      maxTokens.param,
      'context_length_exceeded',
    );
  }
  const logitBias: Record<string, number> = {};
  for (const [token, bias] of Object.entries(req.logit_bias ?? {})) {
    if (!/^\d+$/.test(token) || Number(token) >= info.vocabSize) {
      throw OpenAiError.invalid(
        `Invalid key in 'logit_bias': ${JSON.stringify(token)}. Keys must be token ids between 0 and ${info.vocabSize - 1}.`,
        'logit_bias',
        'invalid_value',
      );
    }
    logitBias[String(Number(token))] = bias;
  }
  const stopTokenIds = req.stop_token_ids ?? [];
  stopTokenIds.forEach((id, i) => {
    if (id >= info.vocabSize) {
      throw OpenAiError.invalid(`Invalid value for 'stop_token_ids[${i}]': token ids must be below the vocabulary size ${info.vocabSize}.`, `stop_token_ids[${i}]`, 'invalid_value');
    }
  });
  const minTokens = req.min_tokens ?? 0;
  if (maxTokens.value !== null && minTokens > maxTokens.value) {
    throw OpenAiError.invalid(`Invalid value for 'min_tokens': ${minTokens} is more than '${maxTokens.param}' (${maxTokens.value}).`, 'min_tokens', 'invalid_value');
  }
  if (minTokens >= info.contextLength) {
    throw OpenAiError.invalid(`Invalid value for 'min_tokens': it must be below the model's context length ${info.contextLength}.`, 'min_tokens', 'invalid_value');
  }
  const stop = (typeof req.stop === 'string' ? [req.stop] : (req.stop ?? [])).filter((s) => s !== '');
  // top_p = 0 keeps only the most likely token: that is greedy decoding.
  const greedy = req.top_p === 0;
  return {
    temperature: greedy ? 0 : (req.temperature ?? 1),
    topP: greedy ? 1 : (req.top_p ?? 1),
    topK: Math.max(0, req.top_k ?? 0),
    ...(req.seed != null ? { seed: req.seed } : {}),
    ...(maxTokens.value !== null ? { maxTokens: maxTokens.value } : {}),
    stop,
    presencePenalty: req.presence_penalty ?? 0,
    frequencyPenalty: req.frequency_penalty ?? 0,
    logitBias,
    logprobs,
    topLogprobs,
    n: req.n ?? 1,
    // vLLM extensions: only sent when set, so a request without them is what it was before.
    ...(req.min_p != null ? { minP: req.min_p } : {}),
    ...(req.repetition_penalty != null ? { repetitionPenalty: req.repetition_penalty } : {}),
    ...(stopTokenIds.length > 0 ? { stopTokenIds } : {}),
    ...(req.ignore_eos != null ? { ignoreEos: req.ignore_eos } : {}),
    ...(minTokens > 0 ? { minTokens } : {}),
    ...(req.skip_special_tokens != null ? { skipSpecialTokens: req.skip_special_tokens } : {}),
  };
}

export function planChatCompletion(req: ChatCompletionRequest, info: PolicyInfo, ids: { id: string; created: number }): GenerationPlan {
  sharedChecks(req);
  checkModel(req.model, info);
  if (req.functions != null && req.functions.length > 0) throw unsupported('functions', "the deprecated function-calling API is not available; use 'tools'");
  if (req.function_call != null && req.function_call !== 'none') throw unsupported('function_call', "the deprecated function-calling API is not available; use 'tool_choice'");
  if (req.modalities != null && req.modalities.some((m) => m !== 'text')) throw unsupported('modalities', "only 'text' is supported");
  if ((req.top_logprobs ?? 0) > 0 && req.logprobs !== true) {
    throw OpenAiError.invalid("'top_logprobs' requires 'logprobs' to be true.", 'top_logprobs');
  }
  if (!info.hasChatTemplate) {
    throw OpenAiError.invalid(`The model \`${info.model}\` has no chat template; use /v1/completions with a prompt.`, 'messages', 'no_chat_template');
  }
  const agent = planAgentParts(req, info);
  const maxTokens =
    req.max_completion_tokens != null
      ? { value: req.max_completion_tokens, param: 'max_completion_tokens' }
      : { value: req.max_tokens ?? null, param: 'max_tokens' };
  const logprobs = req.logprobs === true;
  const sampling = samplingOf(req, info, maxTokens, logprobs, logprobs ? (req.top_logprobs ?? 0) : 0);
  // Mistral's [TOOL_CALLS] is a special token: its text must stay in the output for the parser to see it.
  if (agent.toolCallFormat === 'mistral' && req.skip_special_tokens == null) sampling.skipSpecialTokens = false;
  return {
    endpoint: 'chat.completions',
    promptParam: 'messages',
    id: ids.id,
    created: ids.created,
    model: info.model,
    stream: req.stream === true,
    includeUsage: req.stream === true && req.stream_options?.include_usage === true,
    n: sampling.n,
    echo: false,
    logprobs: logprobs ? 'chat' : 'none',
    requests: [
      {
        requestId: ids.id,
        input: {
          kind: 'chat',
          messages: agent.messages,
          ...(agent.tools ? { tools: agent.tools } : {}),
          ...(req.chat_template_kwargs != null ? { templateKwargs: req.chat_template_kwargs } : {}),
        },
        sampling,
        echo: false,
        ...(agent.constraint ? { constraint: agent.constraint } : {}),
      },
    ],
    messages: agent.plainMessages,
    toolCallFormat: agent.toolCallFormat,
    reasoning: info.reasoning === null ? null : { startsOpen: info.reasoning.startsOpen },
    prompts: null,
    user: req.user ?? null,
    body: { ...req },
  };
}

function promptsOf(prompt: CompletionRequest['prompt']): Array<string | number[]> {
  if (typeof prompt === 'string') return [prompt];
  if (prompt.length > 0 && typeof prompt[0] === 'number') return [prompt as number[]];
  return prompt as Array<string | number[]>;
}

export function planCompletion(req: CompletionRequest, info: PolicyInfo, ids: { id: string; created: number }): GenerationPlan {
  sharedChecks(req);
  checkModel(req.model, info);
  if (req.suffix != null && req.suffix !== '') throw unsupported('suffix', 'insertion (suffix) is not available');
  const n = req.n ?? 1;
  if (req.best_of != null && req.best_of !== n) throw unsupported('best_of', "best_of must equal 'n' (candidates are not ranked server-side)");
  if (req.echo === true && req.logprobs != null) {
    throw unsupported('echo', "'echo' with 'logprobs' needs prompt logprobs, which are not available");
  }
  const prompts = promptsOf(req.prompt);
  if (prompts.length * n > MAX_CHOICES) {
    throw OpenAiError.invalid(`Too many choices: ${prompts.length} prompts × n=${n} exceeds ${MAX_CHOICES}.`, 'prompt');
  }
  prompts.forEach((p, i) => {
    if (typeof p !== 'string' && p.some((id) => id >= info.vocabSize)) {
      throw OpenAiError.invalid(`Token ids in 'prompt' must be below the vocabulary size ${info.vocabSize}.`, prompts.length > 1 ? `prompt[${i}]` : 'prompt');
    }
  });
  const maxTokens = { value: req.max_tokens ?? COMPLETIONS_DEFAULT_MAX_TOKENS, param: 'max_tokens' };
  const logprobs = req.logprobs != null;
  const sampling = samplingOf(req, info, maxTokens, logprobs, req.logprobs ?? 0);
  const echo = req.echo === true;
  return {
    endpoint: 'completions',
    promptParam: 'prompt',
    id: ids.id,
    created: ids.created,
    model: info.model,
    stream: req.stream === true,
    includeUsage: req.stream === true && req.stream_options?.include_usage === true,
    n,
    echo,
    logprobs: logprobs ? 'completions' : 'none',
    requests: prompts.map((p, i) => ({
      requestId: prompts.length === 1 ? ids.id : `${ids.id}-${i}`,
      input: typeof p === 'string' ? { kind: 'text' as const, text: p } : { kind: 'tokens' as const, tokenIds: p },
      sampling,
      echo,
    })),
    messages: null,
    toolCallFormat: null,
    reasoning: null,
    prompts,
    user: req.user ?? null,
    body: { ...req },
  };
}
