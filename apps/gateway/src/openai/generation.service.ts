/**
 * Runs one OpenAI completion request against the policy: plan it, check the prompt while the policy starts (the
 * check's round trip overlaps the prefill instead of adding to time to first token; a blocked prompt is a 400 and
 * its generation is cancelled before anything of it is sent), open one frame stream per prompt, hold the HTTP status
 * until every stream has started (so early policy errors keep their status), then answer with one JSON body or SSE chunks
 * of what each choice's output gate releases, publish the completion record before the response ends,
 * and cancel the policy's work when the client goes away or the content filter cut every open choice.
 */
import { Inject, Injectable, Logger } from '@nestjs/common';
import type { GatewayConfig } from '@flywheel/config';
import { newTimeOrderedId, type GenerateFrame, type TokenDelta } from '@flywheel/contracts';
import { MeshError, SERVICE_CONFIG } from '@flywheel/mesh';
import { RateLimiter } from '../auth/rate-limiter';
import { OpenAiError, toOpenAiError } from '../http/openai-error';
import { meshRetryBudgetMs, type RequestContext } from '../http/request-context';
import type { ResponseSink } from '../http/response-sink';
import { GatewayModeration } from '../moderation/gateway-moderation.service';
import type { GateStep } from '../moderation/output-gate';
import { GatewayMetrics } from '../observability/gateway.metrics';
import { CompletionRecords } from './completion-records';
import {
  parseChatCompletionBody,
  parseCompletionBody,
  planChatCompletion,
  planCompletion,
  type Endpoint,
  type GenerationPlan,
} from './openai-request.mapping';
import {
  chatCompletionOf,
  ChoiceState,
  ChunkWriter,
  completionRecordOf,
  CompletionState,
  PolicyCancelledError,
  textCompletionOf,
} from './openai-response.mapping';
import { PolicyClient } from './policy.client';
import { mergeDeltas } from './token-deltas';

interface SubStream {
  promptIndex: number;
  requestId: string;
  frames: AsyncGenerator<GenerateFrame>;
  ended: boolean;
  /** policy.cancel was sent because the content filter cut the choices still running. */
  cancelSent: boolean;
}

const ENDPOINT_ROUTE: Record<Endpoint, string> = {
  'chat.completions': '/v1/chat/completions',
  completions: '/v1/completions',
};

@Injectable()
export class GenerationService {
  private readonly logger = new Logger('GenerationService');

  constructor(
    private readonly policy: PolicyClient,
    private readonly records: CompletionRecords,
    private readonly metrics: GatewayMetrics,
    private readonly limiter: RateLimiter,
    private readonly moderation: GatewayModeration,
    @Inject(SERVICE_CONFIG) private readonly config: GatewayConfig,
  ) {}

  async chatCompletion(body: unknown, ctx: RequestContext, sink: ResponseSink): Promise<void> {
    const req = parseChatCompletionBody(body);
    const info = await this.policyInfo('messages');
    const plan = planChatCompletion(req, info, { id: `chatcmpl-${newId()}`, created: nowS() });
    await this.run(plan, ctx, sink);
  }

  async completion(body: unknown, ctx: RequestContext, sink: ResponseSink): Promise<void> {
    const req = parseCompletionBody(body);
    const info = await this.policyInfo('prompt');
    const plan = planCompletion(req, info, { id: `cmpl-${newId()}`, created: nowS() });
    await this.run(plan, ctx, sink);
  }

  private async policyInfo(promptParam: 'messages' | 'prompt') {
    try {
      return await this.policy.info();
    } catch (err) {
      throw toOpenAiError(err, promptParam);
    }
  }

  /**
   * Throws OpenAiError while nothing was sent; once streaming, errors end the stream as an event. The prompt is checked
   * once the generations have started: nothing goes out before the check passed, and its refusal wins over the policy's.
   */
  private async run(plan: GenerationPlan, ctx: RequestContext, sink: ResponseSink): Promise<void> {
    ctx.log.completion_id = plan.id;
    ctx.log.model = plan.model;
    ctx.log.stream = plan.stream;
    const abort = new AbortController();
    sink.onClientGone(() => abort.abort());
    const subs: SubStream[] = plan.requests.map((request, promptIndex) => ({
      promptIndex,
      requestId: request.requestId,
      frames: this.policy.generate(request, abort.signal, meshRetryBudgetMs(ctx)),
      ended: false,
      cancelSent: false,
    }));
    let state: CompletionState | null = null;
    let started = false;
    try {
      // The generations start now (an async generator sends its request on the first next()); allSettled never
      // rejects, so a refused prompt leaves no unhandled rejection behind.
      const starting = Promise.allSettled(subs.map((s) => s.frames.next()));
      const input = await this.moderation.checkPrompt(plan, ctx);
      const st = new CompletionState(plan, { input, gate: () => this.moderation.outputGate() });
      state = st;
      const writer = plan.stream ? new ChunkWriter(st) : null;
      // Every prompt's stream must start before the status line goes out: a refused prompt is a 4xx.
      const firsts = await starting;
      firsts.forEach((r, i) => {
        // A stream the policy refused has nothing to cancel.
        if (r.status === 'rejected') subs[i]!.ended = true;
      });
      const failed = firsts.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      started = true;
      if (writer) sink.startEvents();
      firsts.forEach((r, i) => {
        const sub = subs[i]!;
        if (r.status !== 'fulfilled' || r.value.done) throw new MeshError('internal', 'the policy ended a stream without frames');
        this.onFrame(sub, r.value.value, st, writer, sink, ctx);
      });
      if (writer) {
        for (const choice of st.choices) {
          const opening = writer.opening(choice);
          if (opening !== null) sink.event(opening);
        }
      }
      await Promise.all(subs.map((sub) => this.pump(sub, st, writer, sink, ctx)));
      if (writer && plan.includeUsage) sink.event(writer.usage());
      await this.publish(st, ctx, 'completed', null);
      this.account(st, ctx);
      if (writer) {
        sink.event('[DONE]');
        sink.end();
      } else {
        sink.json(200, plan.endpoint === 'chat.completions' ? chatCompletionOf(st) : textCompletionOf(st));
      }
    } catch (err) {
      abort.abort();
      for (const sub of subs) {
        if (!sub.ended) this.policy.cancel(sub.requestId);
        void sub.frames.return(undefined).catch(() => undefined);
      }
      if (sink.clientGone) {
        ctx.statusOverride = 499;
        if (state) this.account(state, ctx);
        if (started && state) void this.publish(state, ctx, 'cancelled', null).catch(() => undefined);
        return;
      }
      const apiError =
        err instanceof PolicyCancelledError
          ? new OpenAiError(503, 'server_error', 'The policy service cancelled the generation; please retry.', null, 'cancelled')
          : toOpenAiError(err, plan.promptParam);
      ctx.log.error_code = apiError.code ?? apiError.type;
      if (apiError.status >= 500 && !(err instanceof MeshError) && !(err instanceof OpenAiError)) {
        this.logger.error(`${plan.id} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      }
      if (started && state && state.policyVersion !== null) {
        const error = { code: apiError.code, message: apiError.message };
        await this.publish(state, ctx, 'failed', error).catch(() => undefined);
      }
      if (!sink.streaming) throw apiError;
      ctx.statusOverride = apiError.status;
      sink.event(JSON.stringify(apiError.toBody()));
      sink.end();
    }
  }

  private async pump(sub: SubStream, state: CompletionState, writer: ChunkWriter | null, sink: ResponseSink, ctx: RequestContext) {
    if (sub.ended) return;
    for await (const frame of sub.frames) {
      this.onFrame(sub, frame, state, writer, sink, ctx);
      if (sub.ended) break;
    }
    if (!sub.ended) throw new MeshError('unavailable', `the policy stream of ${sub.requestId} ended without its end frame`);
  }

  private onFrame(sub: SubStream, frame: GenerateFrame, state: CompletionState, writer: ChunkWriter | null, sink: ResponseSink, ctx: RequestContext) {
    switch (frame.type) {
      case 'start':
        state.onStart(sub.promptIndex, frame);
        this.policy.noteVersion(frame.policyVersion);
        return;
      case 'tokens':
        for (const delta of mergeDeltas(frame.tokens)) {
          this.onDelta(sub, delta, state, writer, sink, ctx);
          if (sub.ended) return;
        }
        return;
      case 'end':
        state.onEnd(frame);
        sub.ended = true;
        return;
    }
  }

  /** A choice's new tokens (through its output gate), then its end when the delta carries one. */
  private onDelta(sub: SubStream, delta: TokenDelta, state: CompletionState, writer: ChunkWriter | null, sink: ResponseSink, ctx: RequestContext) {
    if (delta.tokenIds.length > 0 || delta.text !== '') {
      const choice = state.onToken(sub.promptIndex, delta);
      // Cut by the content filter: the policy is finishing it or being cancelled; nothing more goes out.
      if (choice.finishReason !== null) return;
      const step = choice.gate.push(delta.text, delta.logprobs ?? []);
      if (step.blocked) return this.cut(sub, choice, step, state, writer, sink, ctx);
      this.release(choice, step, state, writer, sink, ctx);
    }
    const finishReason = delta.finishReason;
    if (finishReason === undefined || state.choiceOf(sub.promptIndex, delta.choice).finishReason !== null) return;
    const choice = state.onFinish(sub.promptIndex, { ...delta, finishReason });
    // The classifier's last read can still cut the held tail: the choice then ends as a push-time cut does.
    const last = choice.gate.end();
    if (last.blocked) return this.cut(sub, choice, last, state, writer, sink, ctx);
    this.release(choice, last, state, writer, sink, ctx, true);
    this.finished(sub, choice, state, writer, sink);
  }

  /** The content filter cut a choice: what the gate still lets out goes, and the choice ends with content_filter. */
  private cut(sub: SubStream, choice: ChoiceState, step: GateStep, state: CompletionState, writer: ChunkWriter | null, sink: ResponseSink, ctx: RequestContext) {
    this.release(choice, step, state, writer, sink, ctx);
    choice.finishReason = 'content_filter';
    this.finished(sub, choice, state, writer, sink);
  }

  /** `end`: the choice's last release (the tool-call parser gives back what it held). */
  private release(choice: ChoiceState, step: GateStep, state: CompletionState, writer: ChunkWriter | null, sink: ResponseSink, ctx: RequestContext, end = false) {
    const parsed = state.release(choice, step, end);
    if (!writer) return;
    if (parsed === null && step.text === '' && (state.plan.logprobs === 'none' || step.logprobs.length === 0)) return;
    const chunk = writer.content(choice, step, parsed);
    if (chunk === null) return;
    sink.event(chunk);
    if (state.firstContentAt === null && step.text !== '') {
      state.firstContentAt = performance.now();
      this.metrics.timeToFirstToken.observe({ endpoint: ENDPOINT_ROUTE[state.plan.endpoint] }, (state.firstContentAt - ctx.startedAt) / 1000);
    }
  }

  /**
   * A choice ended for the client (its finish chunk goes out). Once every choice of a policy request
   * has, and the content filter cut one the policy is still generating, the policy is told to stop;
   * its end frame (usage) still arrives.
   */
  private finished(sub: SubStream, choice: ChoiceState, state: CompletionState, writer: ChunkWriter | null, sink: ResponseSink) {
    this.moderation.countOutput(choice.gate);
    if (writer) sink.event(writer.finish(choice));
    const choices = state.choicesOf(sub.promptIndex);
    if (sub.cancelSent || sub.ended || choices.some((c) => c.finishReason === null)) return;
    if (choices.some((c) => c.finishReason === 'content_filter')) {
      sub.cancelSent = true;
      this.policy.cancel(sub.requestId);
    }
  }

  private async publish(state: CompletionState, ctx: RequestContext, status: 'completed' | 'cancelled' | 'failed', error: { code: string | null; message: string } | null) {
    const record = completionRecordOf(state, {
      status,
      error,
      startedAt: ctx.startedAt,
      now: performance.now(),
      keyId: ctx.key?.id ?? 'anonymous',
      requestId: ctx.requestId,
      gatewayInstanceId: this.config.instanceId,
    });
    await this.records.publish(record);
  }

  /** Token rate limit, token counters and access-log fields, once per request. */
  private account(state: CompletionState, ctx: RequestContext) {
    const total = state.promptTokens + state.completionTokens;
    if (ctx.key) this.limiter.charge(ctx.key.id, ctx.key.limits, total);
    this.metrics.tokens.inc({ kind: 'prompt' }, state.promptTokens);
    this.metrics.tokens.inc({ kind: 'completion' }, state.completionTokens);
    ctx.log.prompt_tokens = state.promptTokens;
    ctx.log.completion_tokens = state.completionTokens;
    ctx.log.policy_version = state.policyVersion;
    if (state.firstContentAt !== null) ctx.log.ttft_ms = Math.round((state.firstContentAt - ctx.startedAt) * 100) / 100;
  }
}

/** Time-ordered (UUIDv7) so the feedback API can tell a completion still in flight from one that never existed. */
const newId = (): string => newTimeOrderedId();
const nowS = (): number => Math.floor(Date.now() / 1000);
