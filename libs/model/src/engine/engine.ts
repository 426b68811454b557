/**
 * The generation engine of one policy replica: validates requests, runs ONE scheduler loop (one step in
 * flight at a time) over a StepRunner, samples, detokenizes, applies stop rules and streams per-choice
 * events. No Nest, no NATS, no metrics library: the policy service adapts it (EngineObserver for timings).
 */
import { randomInt } from 'node:crypto';
import { z } from 'zod';
import { BlockManager } from './block-manager';
import { IncrementalDetokenizer, StopStringMatcher } from './detokenizer';
import {
  ContextLengthExceededError,
  EngineClosedError,
  EngineFullError,
  InvalidRequestError,
  type EngineObserver,
  type EngineStats,
  type FinishReason,
  type GenerateRequest,
  type SamplingParams,
  type SequenceConstraint,
  type StepRunner,
  type TokenDecoder,
  type TokenEvent,
  type TokenEventStream,
  type TokenLogprob,
} from './engine.types';
import { EventStream } from './event-stream';
import { MAX_TOP_LOGPROBS, SequenceSampler } from './sampler';
import { Scheduler, type ScheduledStep, type SchedulableSequence } from './scheduler';

export const engineConfigSchema = z
  .object({
    /** Longest sequence (prompt + output); the model's max_position_embeddings or less. */
    maxModelLen: z.number().int().positive(),
    numBlocks: z.number().int().positive(),
    blockSize: z.number().int().positive().default(16),
    maxBatchTokens: z.number().int().positive().default(2048),
    maxSeqs: z.number().int().positive().default(64),
    /** Bound on queued sequences; beyond it generate() throws EngineFullError. */
    maxWaiting: z.number().int().nonnegative().default(256),
    enablePrefixCaching: z.boolean().default(true),
    /** Stop ids from generation_config.json (eos_token_id, possibly a list). */
    eosTokenIds: z.array(z.number().int().nonnegative()),
  })
  .refine((c) => c.maxBatchTokens >= c.maxSeqs, { message: 'maxBatchTokens must be >= maxSeqs' });
export type EngineConfig = z.infer<typeof engineConfigSchema>;
export type EngineConfigInput = z.input<typeof engineConfigSchema>;

export interface EngineDeps {
  runner: StepRunner;
  decoder: TokenDecoder;
  config: EngineConfigInput;
  observer?: EngineObserver;
  /** Milliseconds; injectable for tests. */
  clock?: () => number;
}

export const DEFAULT_SAMPLING: SamplingParams = {
  temperature: 1,
  topP: 1,
  topK: 0,
  seed: null,
  presencePenalty: 0,
  frequencyPenalty: 0,
  logitBias: new Map(),
  logprobs: false,
  topLogprobs: 0,
  minP: 0,
  repetitionPenalty: 1,
};

/** One choice of a request: the unit the scheduler and block manager see. */
class Sequence implements SchedulableSequence {
  readonly tokens: number[];
  numComputed = 0;
  generated = 0;
  finished = false;
  firstTokenAt: number | null = null;
  lastTokenAt = 0;
  /** Choices still to fork from this one when its prompt prefill completes. */
  pendingForks: Sequence[] = [];
  /** The allowed-token bitmask of the next sample, computed while the step runs (constrained sequences only). */
  mask: Int32Array | null = null;

  constructor(
    readonly id: number,
    readonly request: RequestState,
    readonly choiceIndex: number,
    promptIds: readonly number[],
    readonly sampler: SequenceSampler,
    readonly detokenizer: IncrementalDetokenizer,
    readonly stopMatcher: StopStringMatcher,
    readonly constraint: SequenceConstraint | null = null,
  ) {
    this.tokens = [...promptIds];
  }

  get seats(): number {
    return 1 + this.pendingForks.length;
  }
}

interface RequestState {
  readonly request: GenerateRequest;
  readonly maxTokens: number;
  /** Ids that end a choice: the model's EOS (unless ignoreEos) and the request's stopTokenIds. */
  readonly stopIds: ReadonlySet<number>;
  /** Stop ids are masked while a choice has generated fewer tokens than this. */
  readonly minTokens: number;
  readonly arrivedAt: number;
  readonly stream: EventStream;
  readonly sequences: Sequence[];
  cancelled: boolean;
  openChoices: number;
}

export class Engine {
  private readonly config: EngineConfig;
  private readonly runner: StepRunner;
  private readonly decoder: TokenDecoder;
  private readonly observer: EngineObserver;
  private readonly clock: () => number;
  private readonly blocks: BlockManager;
  private readonly scheduler: Scheduler<Sequence>;
  /** Effective context: the model's, capped by what the KV pool can hold for one sequence. */
  private readonly maxLen: number;
  private readonly requests = new Map<string, RequestState>();
  private nextSeqId = 0;
  private loopRunning = false;
  private loopDone: Promise<void> = Promise.resolve();
  private closed = false;
  private counters = { promptTokens: 0, generationTokens: 0, steps: 0 };

  constructor(deps: EngineDeps) {
    this.config = engineConfigSchema.parse(deps.config);
    this.runner = deps.runner;
    this.decoder = deps.decoder;
    this.observer = deps.observer ?? {};
    this.clock = deps.clock ?? (() => performance.now());
    this.blocks = new BlockManager({
      numBlocks: this.config.numBlocks,
      blockSize: this.config.blockSize,
      enablePrefixCaching: this.config.enablePrefixCaching,
      ...(this.runner.attentionWindow !== undefined ? { slidingWindow: this.runner.attentionWindow } : {}),
    });
    this.scheduler = new Scheduler(this.blocks, { maxBatchTokens: this.config.maxBatchTokens, maxSeqs: this.config.maxSeqs });
    // A sequence holds every block of its context, except on an all-sliding-window model: there it holds the
    // window behind its next query plus the step's chunk, so the cache no longer bounds its length when that fits.
    const window = this.runner.attentionWindow;
    const heldAtMost = window === undefined ? Infinity : Math.ceil((window + this.config.maxBatchTokens) / this.config.blockSize) + 2;
    this.maxLen = heldAtMost <= this.config.numBlocks ? this.config.maxModelLen : Math.min(this.config.maxModelLen, this.config.numBlocks * this.config.blockSize);
  }

  /**
   * Queues a request and returns its event stream (events of all choices, interleaved). Throws at once:
   * InvalidRequestError, ContextLengthExceededError, EngineFullError, EngineClosedError.
   */
  generate(request: GenerateRequest): TokenEventStream {
    let maxTokens: number;
    try {
      if (this.closed) throw new EngineClosedError('engine is closed');
      maxTokens = this.validate(request);
      if (this.scheduler.waiting.length >= this.config.maxWaiting) {
        throw new EngineFullError(`engine queue is full (${this.config.maxWaiting} waiting)`);
      }
    } catch (err) {
      // Refused: the constraints were never ours to keep.
      for (const c of request.constraints ?? []) c.dispose();
      throw err;
    }
    const stream = new EventStream(() => this.cancel(request.requestId));
    const state: RequestState = {
      request,
      maxTokens,
      stopIds: new Set([...(request.ignoreEos === true ? [] : this.config.eosTokenIds), ...request.stopTokenIds]),
      minTokens: request.minTokens ?? 0,
      arrivedAt: this.clock(),
      stream,
      sequences: [],
      cancelled: false,
      openChoices: request.n,
    };
    const seed = request.sampling.seed ?? randomInt(0, 2 ** 47);
    const decoder: TokenDecoder =
      request.skipSpecialTokens === false ? { decode: (ids) => this.decoder.decode(ids, { skipSpecialTokens: false }) } : this.decoder;
    for (let choice = 0; choice < request.n; choice++) {
      state.sequences.push(
        new Sequence(
          this.nextSeqId++,
          state,
          choice,
          request.promptTokenIds,
          new SequenceSampler(request.sampling, seed, choice, request.promptTokenIds),
          new IncrementalDetokenizer(decoder, request.promptTokenIds),
          new StopStringMatcher(request.stop),
          request.constraints?.[choice] ?? null,
        ),
      );
    }
    // Choice 0 prefills the prompt; the others fork from it and share its blocks.
    const [first, ...rest] = state.sequences;
    first!.pendingForks = rest;
    this.requests.set(request.requestId, state);
    this.counters.promptTokens += request.promptTokenIds.length;
    this.scheduler.add(first!);
    this.ensureLoop();
    return stream;
  }

  /** Ends a request: its choices finish with 'cancelled' and free their blocks before the next step. */
  cancel(requestId: string): boolean {
    const state = this.requests.get(requestId);
    if (!state || state.cancelled) return false;
    state.cancelled = true; // reaped between steps: blocks are never freed under a step in flight
    return true;
  }

  stats(): EngineStats {
    const prefix = this.blocks.stats();
    return {
      running: this.scheduler.running.length,
      waiting: this.scheduler.waiting.reduce((n, s) => n + s.seats, 0),
      kvUsage: this.blocks.usage(),
      preemptions: this.scheduler.preemptions,
      prefixCacheHitBlocks: prefix.hitBlocks,
      prefixCacheQueriedBlocks: prefix.queriedBlocks,
      ...this.counters,
    };
  }

  /** Drops cached prefixes, e.g. after the weights were swapped between steps. */
  resetPrefixCache(): void {
    this.blocks.resetPrefixCache();
  }

  /** Aborts every request and waits for the loop to stop. */
  async close(): Promise<void> {
    this.closed = true;
    for (const id of this.requests.keys()) this.cancel(id);
    await this.loopDone;
  }

  private validate(r: GenerateRequest): number {
    if (!r.requestId) throw new InvalidRequestError('requestId is empty');
    if (this.requests.has(r.requestId)) throw new InvalidRequestError(`request ${r.requestId} is already running`);
    const P = r.promptTokenIds.length;
    if (P === 0) throw new InvalidRequestError('prompt is empty');
    const V = this.runner.vocabSize;
    if (r.promptTokenIds.some((id) => !Number.isInteger(id) || id < 0 || id >= V)) throw new InvalidRequestError(`prompt has token ids outside [0, ${V})`);
    if (!Number.isInteger(r.n) || r.n < 1 || r.n > this.config.maxSeqs) throw new InvalidRequestError(`n must be an integer in [1, ${this.config.maxSeqs}]`);
    const s = r.sampling;
    if (!(s.temperature >= 0)) throw new InvalidRequestError('temperature must be >= 0');
    if (!(s.topP > 0 && s.topP <= 1)) throw new InvalidRequestError('top_p must be in (0, 1]');
    if (!Number.isInteger(s.topK) || s.topK < 0) throw new InvalidRequestError('top_k must be a non-negative integer');
    if (!Number.isInteger(s.topLogprobs) || s.topLogprobs < 0 || s.topLogprobs > MAX_TOP_LOGPROBS) throw new InvalidRequestError(`top_logprobs must be in [0, ${MAX_TOP_LOGPROBS}]`);
    if (!Number.isFinite(s.presencePenalty) || !Number.isFinite(s.frequencyPenalty)) throw new InvalidRequestError('penalties must be finite');
    if (s.seed !== null && !Number.isSafeInteger(s.seed)) throw new InvalidRequestError('seed must be a safe integer');
    if (s.minP !== undefined && !(s.minP >= 0 && s.minP <= 1)) throw new InvalidRequestError('min_p must be in [0, 1]');
    if (s.repetitionPenalty !== undefined && !(s.repetitionPenalty > 0 && Number.isFinite(s.repetitionPenalty))) {
      throw new InvalidRequestError('repetition_penalty must be > 0');
    }
    if (r.stopTokenIds.some((id) => !Number.isInteger(id) || id < 0 || id >= V)) throw new InvalidRequestError(`stop_token_ids must be in [0, ${V})`);
    if (r.minTokens !== undefined && (!Number.isInteger(r.minTokens) || r.minTokens < 0)) throw new InvalidRequestError('min_tokens must be a non-negative integer');
    if (r.minTokens !== undefined && r.maxTokens !== null && r.minTokens > r.maxTokens) throw new InvalidRequestError('min_tokens must be <= max_tokens');
    if (r.maxTokens !== null && (!Number.isInteger(r.maxTokens) || r.maxTokens < 1)) throw new InvalidRequestError('max_tokens must be a positive integer');
    if (r.constraints !== undefined && r.constraints.length !== r.n) throw new InvalidRequestError(`constraints must hold one per choice (${r.n})`);
    const maxTokens = r.maxTokens ?? this.maxLen - P;
    if (P + maxTokens > this.maxLen || maxTokens < 1) {
      throw new ContextLengthExceededError(
        `This model's maximum context length is ${this.maxLen} tokens. However, you requested ${P + Math.max(maxTokens, 1)} tokens ` +
          `(${P} in the prompt, ${Math.max(maxTokens, 1)} in the completion). Please reduce the prompt or the completion length.`,
      );
    }
    return maxTokens;
  }

  /** The loop runs while there is work and exits when idle; a running loop picks new requests up next step. */
  private ensureLoop(): void {
    if (this.loopRunning) return;
    this.loopRunning = true;
    this.loopDone = this.loop().catch((error: unknown) => {
      // A bug in scheduling: fail what is in flight rather than leave streams hanging.
      this.loopRunning = false;
      this.failAll(error instanceof Error ? error : new Error(String(error)));
    });
  }

  /** The one scheduler loop: never two steps in flight. Exits when idle; generate() restarts it. */
  private async loop(): Promise<void> {
    for (;;) {
      this.reapCancelled();
      if (!this.scheduler.hasWork()) {
        // Cleared in the same tick as the check, so a generate() arriving later always starts a new loop.
        this.loopRunning = false;
        return;
      }
      const step = this.scheduler.schedule();
      if (!step) {
        // Nothing runnable yet everything queued: cannot happen when validation holds; fail loudly, never hang.
        this.failHead();
        continue;
      }
      const started = this.clock();
      try {
        if (step.copies.length > 0) {
          await this.runner.copyBlocks(
            step.copies.map((c) => c.src),
            step.copies.map((c) => c.dst),
          );
        }
        const masks = this.nextMasks(step);
        const logits = await this.runner.run(step.batch);
        if (masks !== null) await masks;
        this.scheduler.commit(step);
        this.counters.steps++;
        this.processOutputs(step, logits);
      } catch (error) {
        this.failAll(error instanceof Error ? error : new Error(String(error)));
      }
      this.observer.onStep?.({ tokens: step.batch.tokens.length, sequences: step.chunks.length, durationMs: this.clock() - started });
      // Let new requests, cancels and consumers run between steps.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /**
   * Starts computing the allowed-token masks of every constrained sequence this step samples (forks included:
   * they sample from the same row); it runs on this thread while the kernels run on theirs.
   */
  private nextMasks(step: ScheduledStep<Sequence>): Promise<unknown> | null {
    const pending: Promise<void>[] = [];
    const start = (seq: Sequence): void => {
      const constraint = seq.constraint;
      if (constraint !== null && !seq.finished) pending.push(constraint.nextMask().then((m) => void (seq.mask = m)));
    };
    for (const chunk of step.sampledChunks) {
      start(chunk.seq);
      for (const fork of chunk.seq.pendingForks) start(fork);
    }
    // Unconstrained steps (the common case) add no promise and no await to the loop.
    return pending.length === 0 ? null : Promise.all(pending);
  }

  private processOutputs(step: ScheduledStep<Sequence>, logits: Float32Array): void {
    const V = this.runner.vocabSize;
    if (logits.length !== step.sampledChunks.length * V) throw new Error(`runner returned ${logits.length} logits, expected ${step.sampledChunks.length}×${V}`);
    step.sampledChunks.forEach((chunk, row) => {
      const seq = chunk.seq;
      if (seq.request.cancelled || seq.finished) return;
      const rowLogits = logits.subarray(row * V, (row + 1) * V);
      const forks = seq.pendingForks;
      seq.pendingForks = [];
      for (const child of forks) {
        // Fork before the parent appends its own token: the child shares exactly the computed prompt.
        this.blocks.fork(seq.id, child.id);
        child.numComputed = seq.numComputed;
        this.scheduler.addRunningAfter(seq, child);
      }
      this.appendToken(seq, rowLogits);
      for (const child of forks) this.appendToken(child, rowLogits);
    });
  }

  private appendToken(seq: Sequence, logits: Float32Array): void {
    const state = seq.request;
    const sample = seq.sampler.sample(logits, seq.generated < state.minTokens ? state.stopIds : [], seq.mask);
    const id = sample.tokenId;
    // The grammar accepts what its mask allowed; a refusal (a bug) ends the choice rather than derail it.
    const grammarDone = seq.constraint !== null && (!seq.constraint.accept(id) || seq.constraint.isTerminated());
    seq.mask = null;
    seq.tokens.push(id);
    seq.generated++;
    this.counters.generationTokens++;
    const now = this.clock();
    if (seq.firstTokenAt === null) {
      seq.firstTokenAt = now;
      this.observer.onFirstToken?.(state.request.requestId, seq.choiceIndex, now - state.arrivedAt);
    } else {
      this.observer.onInterToken?.(state.request.requestId, seq.choiceIndex, now - seq.lastTokenAt);
    }
    seq.lastTokenAt = now;

    let text = '';
    let finish: FinishReason | null = null;
    if (state.stopIds.has(id)) {
      finish = 'stop'; // the stop token itself adds no text
    } else {
      // As vLLM, stop strings count only once min_tokens were generated.
      const check = seq.stopMatcher.add(seq.detokenizer.push(id), seq.generated >= state.minTokens);
      text = check.emit;
      if (check.stopped || grammarDone) finish = 'stop';
    }
    if (finish === null && (seq.generated >= state.maxTokens || seq.tokens.length >= this.maxLen)) finish = 'length';
    // A stop-string match already cut the text; any other ending releases what was held back.
    if (finish !== null && !seq.stopMatcher.matched) text += this.flushText(seq);

    const event: TokenEvent = {
      requestId: state.request.requestId,
      choiceIndex: seq.choiceIndex,
      tokenIds: [id],
      textDelta: text,
      usage: { promptTokens: seq.tokens.length - seq.generated, completionTokens: seq.generated },
    };
    if (sample.logprob !== undefined) event.logprobs = [this.logprobEntry(id, sample.logprob, sample.top ?? [])];
    if (finish !== null) this.finish(seq, finish, event);
    else state.stream.push(event);
  }

  /** Text still held when a choice ends; nothing more after a stop string matched. */
  private flushText(seq: Sequence): string {
    const check = seq.stopMatcher.add(seq.detokenizer.flush());
    return check.stopped ? check.emit : check.emit + seq.stopMatcher.flush();
  }

  private logprobEntry(id: number, logprob: number, top: { tokenId: number; logprob: number }[]): TokenLogprob {
    const text = (t: number): string => this.decoder.tokenText?.(t) ?? this.decoder.decode([t]);
    return { token: text(id), tokenId: id, logprob, topLogprobs: top.map((c) => ({ token: text(c.tokenId), tokenId: c.tokenId, logprob: c.logprob })) };
  }

  private finish(seq: Sequence, reason: FinishReason, event: TokenEvent): void {
    const state = seq.request;
    seq.finished = true;
    seq.constraint?.dispose();
    this.scheduler.remove(seq);
    event.finishReason = reason;
    state.stream.push(event);
    this.observer.onFinish?.(state.request.requestId, seq.choiceIndex, this.clock() - state.arrivedAt, reason, event.usage);
    // Choices still waiting to fork end with their parent only when the parent ends before prefill (cancelled).
    for (const child of seq.pendingForks) this.finishUnstarted(child, reason);
    seq.pendingForks = [];
    if (--state.openChoices === 0) {
      this.requests.delete(state.request.requestId);
      state.stream.end();
    }
  }

  private finishUnstarted(seq: Sequence, reason: FinishReason): void {
    this.finish(seq, reason, {
      requestId: seq.request.request.requestId,
      choiceIndex: seq.choiceIndex,
      tokenIds: [],
      textDelta: '',
      usage: { promptTokens: seq.tokens.length - seq.generated, completionTokens: seq.generated },
    });
  }

  private reapCancelled(): void {
    for (const state of [...this.requests.values()]) {
      if (!state.cancelled) continue;
      for (const seq of state.sequences) {
        if (seq.finished || state.sequences.some((p) => p.pendingForks.includes(seq))) continue;
        this.finishUnstarted(seq, 'cancelled');
      }
    }
  }

  private failHead(): void {
    const head = this.scheduler.waiting[0];
    if (!head) return;
    this.failRequest(head.request, new ContextLengthExceededError('request does not fit the KV cache'));
  }

  private failAll(error: Error): void {
    for (const state of [...this.requests.values()]) this.failRequest(state, new EngineClosedError(`engine step failed: ${error.message}`));
  }

  private failRequest(state: RequestState, error: Error): void {
    for (const seq of state.sequences) {
      seq.finished = true;
      seq.constraint?.dispose();
      this.scheduler.remove(seq);
    }
    this.requests.delete(state.request.requestId);
    state.stream.end(error);
  }
}
