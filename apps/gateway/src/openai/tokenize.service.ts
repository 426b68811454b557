/**
 * vLLM's POST /tokenize and POST /detokenize: the body parsed and checked against the served model
 * (plain functions), then one policy.tokenize / policy.detokenize request, since the policy owns the
 * tokenizer and chat template. Not the HTTP routing (tokenize.controller.ts).
 */
import { Injectable, Inject } from '@nestjs/common';
import {
  detokenizeRequestSchema,
  detokenizeResultSchema,
  SUBJECTS,
  tokenizeRequestSchema,
  tokenizeResultSchema,
  type DetokenizeRequest,
  type DetokenizeRequestPayload,
  type DetokenizeResponse,
  type PolicyInfo,
  type TokenizeRequest,
  type TokenizeRequestPayloadInput,
  type TokenizeResponse,
} from '@flywheel/contracts';
import type { GatewayConfig } from '@flywheel/config';
import { MeshConnection, RECONNECT_RETRY_MS, SERVICE_CONFIG } from '@flywheel/mesh';
import { fromZodError, OpenAiError, toOpenAiError } from '../http/openai-error';
import { checkModel } from './openai-request.mapping';
import { promptMessagesOf } from './structured-output.plan';
import { PolicyClient } from './policy.client';

export function parseTokenizeBody(body: unknown): TokenizeRequest {
  const parsed = tokenizeRequestSchema.safeParse(body);
  if (!parsed.success) throw fromZodError(parsed.error, body);
  return parsed.data;
}

export function parseDetokenizeBody(body: unknown): DetokenizeRequest {
  const parsed = detokenizeRequestSchema.safeParse(body);
  if (!parsed.success) throw fromZodError(parsed.error, body);
  return parsed.data;
}

/** The policy.tokenize payload of a /tokenize body; `model`, when sent, must be the served one. */
export function tokenizePayloadOf(req: TokenizeRequest, info: PolicyInfo): TokenizeRequestPayloadInput {
  if (req.model != null) checkModel(req.model, info);
  if ('prompt' in req) return { kind: 'text', text: req.prompt, addSpecialTokens: req.add_special_tokens ?? true };
  if (!info.hasChatTemplate) {
    throw OpenAiError.invalid(`The model \`${info.model}\` has no chat template; tokenize a prompt instead.`, 'messages', 'no_chat_template');
  }
  return {
    kind: 'chat',
    messages: promptMessagesOf(req),
    addGenerationPrompt: req.add_generation_prompt ?? true,
    addSpecialTokens: req.add_special_tokens ?? false,
    templateKwargs: req.chat_template_kwargs ?? {},
  };
}

/** The policy.detokenize payload of a /detokenize body: ids must be inside the vocabulary. */
export function detokenizePayloadOf(req: DetokenizeRequest, info: PolicyInfo): DetokenizeRequestPayload {
  if (req.model != null) checkModel(req.model, info);
  const bad = req.tokens.findIndex((id) => id >= info.vocabSize);
  if (bad >= 0) {
    throw OpenAiError.invalid(`Invalid value for 'tokens[${bad}]': token ids must be below the vocabulary size ${info.vocabSize}.`, `tokens[${bad}]`, 'invalid_value');
  }
  return { tokenIds: req.tokens };
}

@Injectable()
export class TokenizeService {
  constructor(
    private readonly policy: PolicyClient,
    private readonly mesh: MeshConnection,
    @Inject(SERVICE_CONFIG) private readonly config: GatewayConfig,
  ) {}

  async tokenize(body: unknown): Promise<TokenizeResponse> {
    const req = parseTokenizeBody(body);
    const promptParam = 'prompt' in req ? 'prompt' : 'messages';
    try {
      const payload = tokenizePayloadOf(req, await this.policy.info());
      const result = await this.mesh.client.request(SUBJECTS.policy.tokenize, payload, tokenizeResultSchema, this.requestOptions());
      return { count: result.tokenIds.length, max_model_len: result.maxModelLen, tokens: result.tokenIds };
    } catch (err) {
      throw toOpenAiError(err, promptParam);
    }
  }

  async detokenize(body: unknown): Promise<DetokenizeResponse> {
    const req = parseDetokenizeBody(body);
    try {
      const payload = detokenizePayloadOf(req, await this.policy.info());
      const result = await this.mesh.client.request(SUBJECTS.policy.detokenize, payload, detokenizeResultSchema, this.requestOptions());
      return { prompt: result.text };
    } catch (err) {
      throw toOpenAiError(err, 'prompt');
    }
  }

  private requestOptions() {
    return { timeoutMs: this.config.nats.requestTimeoutMs, retryUndeliveredMs: RECONNECT_RETRY_MS };
  }
}
