/**
 * The small interfaces the generation engine is written against, and the shapes it hands out:
 * a step runner (native forward or the TypeScript reference), a token decoder, requests, events, stats, errors.
 * Nothing here computes; no Nest, no native addon, no tokenizer implementation.
 */
import type { FinishReason, MeshErrorCode, TokenLogprob, Usage } from '@flywheel/contracts';
import type { StepBatch } from '@flywheel/kernels';
import type { FramePacer } from './frame-pacer';

/** Wire shapes shared with the policy service's frames (libs/contracts is their single source). */
export type { FinishReason, TokenLogprob, Usage };

/**
 * One engine step, flattened like vLLM: the kernels' own contract (a type-only import, so the engine
 * builds and tests without the native addon loaded).
 */
export type { StepBatch };

/** Runs the model over a paged KV cache. One call at a time: the engine never overlaps two. */
export interface StepRunner {
  readonly vocabSize: number;
  /**
   * Every layer attends to the last attentionWindow positions only (a sliding-window model such as Mistral's):
   * the engine then releases KV blocks that left the window. Absent: some layer reads the whole context.
   */
  readonly attentionWindow?: number;
  /** (L, vocabSize) logits, row i for batch row logitRows[i]. */
  run(batch: StepBatch): Promise<Float32Array>;
  /** Copies whole KV blocks src[i] → dst[i] in every layer; called before the `run` that needs them. */
  copyBlocks(src: readonly number[], dst: readonly number[]): Promise<void>;
}

/** Turns token ids back into text; special tokens (bos/eos) are skipped unless told otherwise, like HF `skip_special_tokens`. */
export interface TokenDecoder {
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  /** The text of one token as OpenAI shows it in logprobs (" there", not "there"); decode([id]) if absent. */
  tokenText?(id: number): string;
}

export interface SamplingParams {
  /** 0 = greedy (argmax, ties → lowest id). */
  temperature: number;
  /** (0, 1]; 1 = off. */
  topP: number;
  /** 0 = off. */
  topK: number;
  /** null = fresh entropy per request. */
  seed: number | null;
  presencePenalty: number;
  frequencyPenalty: number;
  /** token id → bias, clamped to [-100, 100] when applied. */
  logitBias: ReadonlyMap<number, number>;
  /** Report the chosen token's logprob. */
  logprobs: boolean;
  /** 0..20 alternatives per position (implies logprobs). */
  topLogprobs: number;
  /** Absent = off. [0, 1]: after temperature, drop tokens whose probability is below minP × the top one's; 0 = off. */
  minP?: number;
  /** Absent = off. > 0; HF/vLLM: logits of tokens in prompt or output divided by it when positive, multiplied when negative; 1 = off. */
  repetitionPenalty?: number;
}

export interface GenerateRequest {
  requestId: string;
  /** Already tokenized, BOS included when the model wants one. */
  promptTokenIds: readonly number[];
  /** null = up to the context length. */
  maxTokens: number | null;
  /** Number of choices; they share the prompt's KV blocks. */
  n: number;
  stop: readonly string[];
  /** Extra stop ids on top of the engine's eos ids. */
  stopTokenIds: readonly number[];
  /** Absent = false. EOS ids do not end the choice (stopTokenIds still do). */
  ignoreEos?: boolean;
  /** Absent = 0. The stop ids (EOS unless ignoreEos, and stopTokenIds) are masked until this many tokens were generated. */
  minTokens?: number;
  /** Absent = true. false: special tokens' text is part of the output text. */
  skipSpecialTokens?: boolean;
  sampling: SamplingParams;
  /**
   * Structured output: one constraint per choice (length n), each at its grammar's start. The engine owns them
   * from here on and disposes each when its choice ends.
   */
  constraints?: readonly SequenceConstraint[];
}

/**
 * A grammar's state for one sequence: which tokens may come next, advanced by each sampled token. The mask of
 * the next token is asked for before the step's forward pass, so computing it overlaps the kernels.
 */
export interface SequenceConstraint {
  /** Int32 words over the vocabulary: bit (id & 31) of word (id >> 5) set = allowed next. */
  nextMask(): Promise<Int32Array>;
  /** Advances by the sampled token; false if the grammar rejects it. */
  accept(tokenId: number): boolean;
  /** The grammar is complete and accepted its stop token. */
  isTerminated(): boolean;
  dispose(): void;
}

/** What one choice produced since its previous event. The last event of a choice carries finishReason. */
export interface TokenEvent {
  requestId: string;
  choiceIndex: number;
  tokenIds: number[];
  textDelta: string;
  /** One entry per id in tokenIds when logprobs were asked for. */
  logprobs?: TokenLogprob[];
  finishReason?: FinishReason;
  usage: Usage;
}

/**
 * A request's events: one by one, or batches() of everything queued since the last batch (never reordered); with a
 * pacer, a batch within its interval of the previous one waits for its tick (the first and the stream's end do not).
 */
export interface TokenEventStream extends AsyncIterable<TokenEvent> {
  batches(pacer?: FramePacer): AsyncIterable<TokenEvent[]>;
}

export interface EngineStats {
  running: number;
  waiting: number;
  /** Fraction of KV blocks held by sequences (cached-but-free blocks count as free). */
  kvUsage: number;
  preemptions: number;
  prefixCacheHitBlocks: number;
  prefixCacheQueriedBlocks: number;
  promptTokens: number;
  generationTokens: number;
  steps: number;
}

/**
 * Timing hooks for TTFT / inter-token / end-to-end histograms; the policy service wires prom-client to it.
 * Times are the engine clock's milliseconds.
 */
export interface EngineObserver {
  onFirstToken?(requestId: string, choiceIndex: number, sinceArrivalMs: number): void;
  onInterToken?(requestId: string, choiceIndex: number, sincePreviousMs: number): void;
  onFinish?(requestId: string, choiceIndex: number, e2eMs: number, reason: FinishReason, usage: Usage): void;
  onStep?(info: { tokens: number; sequences: number; durationMs: number }): void;
}

export class EngineError extends Error {
  constructor(readonly code: MeshErrorCode, message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Prompt + max_tokens do not fit the context (the gateway answers 400 context_length_exceeded). */
export class ContextLengthExceededError extends EngineError {
  constructor(message: string) {
    super('context_length_exceeded', message);
  }
}

/** Malformed request that validation upstream should have caught (empty prompt, bad ids). */
export class InvalidRequestError extends EngineError {
  constructor(message: string) {
    super('invalid_payload', message);
  }
}

/** The waiting queue is at its bound: answer 429 or try another replica. */
export class EngineFullError extends EngineError {
  constructor(message: string) {
    super('overloaded', message);
  }
}

/** The engine was closed, or its runner failed; in-flight requests end with this. */
export class EngineClosedError extends EngineError {
  constructor(message: string) {
    super('unavailable', message);
  }
}
