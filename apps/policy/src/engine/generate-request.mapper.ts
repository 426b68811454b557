/**
 * Turns a policy.generate request (wire shape) into the engine's request: tokenizes text or renders the
 * chat template (with the request's template kwargs), checks token ids against the vocabulary, maps
 * OpenAI-style and vLLM-extension sampling fields, and answers tokenize/detokenize requests. Pure
 * functions over a tokenizer; no engine, no NATS.
 */
import type { DetokenizeRequestPayload, GenerateRequest as WireRequest, TokenizeRequestPayload, ToolCallFormat } from '@flywheel/contracts';
import { MeshError } from '@flywheel/mesh';
import { templateChat, type GenerateRequest as EngineRequest, type TemplateMessage } from '@flywheel/model';

export interface PromptTokenizer {
  readonly vocabSize: number;
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  applyChatTemplate(messages: TemplateMessage[], opts?: { addGenerationPrompt?: boolean; variables?: Record<string, unknown> }): number[];
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string;
  renderChat(messages: TemplateMessage[], opts?: { addGenerationPrompt?: boolean; variables?: Record<string, unknown> }): string;
}

/** What the served model's template needs to know to render tools (tool-prompt.ts). */
export interface ChatRendering {
  hasChatTemplate: boolean;
  toolCallFormat: ToolCallFormat;
  templateHandlesTools: boolean;
  reasoning: { format: 'think'; startsOpen: boolean } | null;
}

export function promptTokenIds(input: WireRequest['input'], tokenizer: PromptTokenizer, rendering: ChatRendering): number[] {
  switch (input.kind) {
    case 'text':
      return tokenizer.encode(input.text, { addSpecialTokens: input.addSpecialTokens });
    case 'chat': {
      if (!rendering.hasChatTemplate) throw new MeshError('invalid_payload', 'this model has no chat template; use completions', 'messages');
      const chat = templateChat(input.messages, input.tools, { format: rendering.toolCallFormat, templateHandlesTools: rendering.templateHandlesTools });
      try {
        return tokenizer.applyChatTemplate(chat.messages, { addGenerationPrompt: true, variables: { ...chat.variables, ...(input.templateKwargs ?? {}) } });
      } catch (err) {
        // A template's raise_exception (Gemma's "System role not supported", roles out of turn): the request's fault.
        if (err instanceof MeshError) throw err;
        throw new MeshError('invalid_payload', `the model's chat template refused these messages: ${err instanceof Error ? err.message : String(err)}`, 'messages');
      }
    }
    case 'tokens': {
      const bad = input.tokenIds.findIndex((id) => id >= tokenizer.vocabSize);
      if (bad >= 0) {
        throw new MeshError('invalid_payload', `token id ${input.tokenIds[bad]} is outside the vocabulary (size ${tokenizer.vocabSize})`, `input.tokenIds.${bad}`);
      }
      return input.tokenIds;
    }
  }
}

export function toEngineRequest(req: WireRequest, promptIds: number[], vocabSize: number): EngineRequest {
  const s = req.sampling;
  const logitBias = new Map<number, number>();
  for (const [id, bias] of Object.entries(s.logitBias)) {
    const tokenId = Number(id);
    if (tokenId >= vocabSize) throw new MeshError('invalid_payload', `logit_bias token id ${id} is outside the vocabulary (size ${vocabSize})`, 'logit_bias');
    logitBias.set(tokenId, bias);
  }
  const stopTokenIds = s.stopTokenIds ?? [];
  const badStop = stopTokenIds.findIndex((id) => id >= vocabSize);
  if (badStop >= 0) {
    throw new MeshError('invalid_payload', `stop_token_ids: token id ${stopTokenIds[badStop]} is outside the vocabulary (size ${vocabSize})`, 'stop_token_ids');
  }
  const minTokens = s.minTokens ?? 0;
  if (s.maxTokens !== undefined && minTokens > s.maxTokens) {
    throw new MeshError('invalid_payload', `min_tokens (${minTokens}) must be at most max_tokens (${s.maxTokens})`, 'min_tokens');
  }
  return {
    requestId: req.requestId,
    promptTokenIds: promptIds,
    maxTokens: s.maxTokens ?? null,
    n: s.n,
    stop: s.stop,
    stopTokenIds,
    ignoreEos: s.ignoreEos ?? false,
    minTokens,
    skipSpecialTokens: s.skipSpecialTokens ?? true,
    sampling: {
      temperature: s.temperature,
      topP: s.topP,
      topK: s.topK,
      seed: s.seed ?? null,
      presencePenalty: s.presencePenalty,
      frequencyPenalty: s.frequencyPenalty,
      logitBias,
      logprobs: s.logprobs || s.topLogprobs > 0,
      topLogprobs: s.topLogprobs,
      minP: s.minP ?? 0,
      repetitionPenalty: s.repetitionPenalty ?? 1,
    },
  };
}

/** policy.tokenize: the ids a prompt or chat would be generated from (chat rendered as for a generation). */
export function tokenizePayload(req: TokenizeRequestPayload, tokenizer: PromptTokenizer, rendering: ChatRendering): number[] {
  if (req.kind === 'text') return tokenizer.encode(req.text, { addSpecialTokens: req.addSpecialTokens });
  if (!rendering.hasChatTemplate) throw new MeshError('invalid_payload', 'this model has no chat template; tokenize a prompt instead', 'messages');
  const chat = templateChat(req.messages, req.tools, { format: rendering.toolCallFormat, templateHandlesTools: rendering.templateHandlesTools });
  const text = tokenizer.renderChat(chat.messages, { addGenerationPrompt: req.addGenerationPrompt, variables: { ...chat.variables, ...req.templateKwargs } });
  // The template writes BOS itself, so by default the text is encoded without special tokens (as a generation's prompt).
  return tokenizer.encode(text, { addSpecialTokens: req.addSpecialTokens });
}

/** policy.detokenize: the text of `tokenIds`, special tokens included (vLLM's /detokenize). */
export function detokenizePayload(req: DetokenizeRequestPayload, tokenizer: PromptTokenizer): string {
  const bad = req.tokenIds.findIndex((id) => id >= tokenizer.vocabSize);
  if (bad >= 0) throw new MeshError('invalid_payload', `token id ${req.tokenIds[bad]} is outside the vocabulary (size ${tokenizer.vocabSize})`, `tokens[${bad}]`);
  return tokenizer.decode(req.tokenIds);
}
