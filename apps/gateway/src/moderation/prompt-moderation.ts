/**
 * The prompt check before generation, as plain functions: which texts of a request are checked (every
 * chat message's content, every string prompt; token-id prompts have no text at the gateway), how they
 * are cut into moderation.check requests that fit the contract's limits, and the 400 a blocked prompt
 * gets. The I/O (NATS, the in-process fallback) is in GatewayModeration.
 */
import { MODERATION_MAX_BATCH, MODERATION_MAX_TEXT_CHARS, type AnyModerationCategory } from '@flywheel/contracts';
import { OpenAiError, type PromptParam } from '../http/openai-error';
import type { GenerationPlan } from '../openai/openai-request.mapping';

/** One text to check: a piece of prompt text `text` starting at UTF-16 offset `offset`. */
export interface PromptPiece {
  text: number;
  offset: number;
  value: string;
}

/** Consecutive pieces of one long text share this many characters, so a match across a cut is seen whole. */
const PIECE_OVERLAP = 1024;

export function promptTextsOf(plan: GenerationPlan): string[] {
  if (plan.messages) return plan.messages.map((m) => m.content);
  return (plan.prompts ?? []).filter((p): p is string => typeof p === 'string');
}

/** Texts as moderation.check batches: pieces of at most `maxChars`, at most `maxBatch` per request. */
export function promptBatchesOf(texts: readonly string[], maxChars = MODERATION_MAX_TEXT_CHARS, maxBatch = MODERATION_MAX_BATCH): PromptPiece[][] {
  const pieces: PromptPiece[] = [];
  texts.forEach((value, text) => {
    if (value.length <= maxChars) return void pieces.push({ text, offset: 0, value });
    const stride = maxChars - Math.min(PIECE_OVERLAP, Math.floor(maxChars / 2));
    for (let offset = 0; ; offset += stride) {
      pieces.push({ text, offset, value: value.slice(offset, offset + maxChars) });
      if (offset + maxChars >= value.length) break;
    }
  });
  const batches: PromptPiece[][] = [];
  for (let i = 0; i < pieces.length; i += maxBatch) batches.push(pieces.slice(i, i + maxBatch));
  return batches;
}

/** 400 content_policy_violation: OpenAI's error shape, plus the categories that blocked the prompt. */
export class ContentPolicyError extends OpenAiError {
  constructor(
    param: PromptParam,
    readonly categories: readonly AnyModerationCategory[],
  ) {
    super(
      400,
      'invalid_request_error',
      `Your ${param === 'messages' ? 'messages were' : 'prompt was'} rejected by content moderation (${categories.join(', ')}). Please revise it and try again.`,
      param,
      'content_policy_violation',
    );
  }

  override toBody() {
    const body = super.toBody();
    return { error: { ...body.error, categories: [...this.categories] } };
  }
}
