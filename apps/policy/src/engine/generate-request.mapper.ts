/**
 * Turns a policy.generate request (wire shape) into the engine's request: tokenizes text or renders the
 * chat template, checks token ids against the vocabulary, maps OpenAI-style sampling fields. Pure
 * functions over a tokenizer; no engine, no NATS.
 */
import type { GenerateRequest as WireRequest } from '@flywheel/contracts';
import { MeshError } from '@flywheel/mesh';
import type { GenerateRequest as EngineRequest } from '@flywheel/model';

export interface PromptTokenizer {
  readonly vocabSize: number;
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  applyChatTemplate(messages: { role: string; content: string }[], opts?: { addGenerationPrompt?: boolean }): number[];
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string;
}

export function promptTokenIds(input: WireRequest['input'], tokenizer: PromptTokenizer, hasChatTemplate: boolean): number[] {
  switch (input.kind) {
    case 'text':
      return tokenizer.encode(input.text, { addSpecialTokens: input.addSpecialTokens });
    case 'chat':
      if (!hasChatTemplate) throw new MeshError('invalid_payload', 'this model has no chat template; use completions', 'messages');
      return tokenizer.applyChatTemplate(input.messages, { addGenerationPrompt: true });
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
  return {
    requestId: req.requestId,
    promptTokenIds: promptIds,
    maxTokens: s.maxTokens ?? null,
    n: s.n,
    stop: s.stop,
    stopTokenIds: [],
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
    },
  };
}
