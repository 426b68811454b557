/**
 * From the policy's frames to OpenAI's answers: a state that gathers choices, usage and timings from
 * one or more frame streams (one per prompt), and builders for chat.completion, text_completion, their
 * streaming chunks and the completion record. A choice's text is what its output gate released, not
 * what the policy generated. Plain data in, plain objects out.
 */
import type {
  ChatChoiceLogprobs,
  ChatCompletion,
  ChatCompletionChunk,
  ChatTokenLogprob,
  ChatToolCallDelta,
  ChatToolCallOut,
  CompletionLogprobs,
  CompletionModeration,
  CompletionRecord,
  FinishReason,
  GenerateFrame,
  OpenAiFinishReason,
  OpenAiUsage,
  TextCompletion,
  TokenDelta,
  TokenLogprob,
} from '@flywheel/contracts';
import type { GateStep, OutputGate } from '../moderation/output-gate';
import type { GenerationPlan } from './openai-request.mapping';
import { ThinkSplitter } from './reasoning.splitter';
import { foldToolCallDeltas, toolCallIdsFor, ToolCallStream, type ParsedStep } from './tool-calls.parser';

/** Released text split for the client: thinking, answer content, and tool-call fragments. */
export interface ParsedOutput extends ParsedStep {
  reasoning: string;
}

type Frame<T extends GenerateFrame['type']> = Extract<GenerateFrame, { type: T }>;

export class ChoiceState {
  /** What the client is sent: the echoed prompt, then the output its gate released. */
  text = '';
  /** Every token the policy generated, and their logprobs (the record keeps them all). */
  tokenIds: number[] = [];
  logprobs: TokenLogprob[] = [];
  /** How many of `logprobs` the gate released (a prefix): what the response carries. */
  releasedLogprobs = 0;
  /** Why the choice ended; 'tool_calls' is derived from it (finished()). */
  finishReason: Exclude<OpenAiFinishReason, 'tool_calls'> | null = null;
  /** Requests with tools: released text split into content and calls as it arrives. */
  readonly tools: ToolCallStream | null;
  /** Reasoning models: `<think>` text split off as reasoning_content. */
  readonly thinking: ThinkSplitter | null;
  /** The content the client sees when the output is split (text minus thinking and calls). */
  content = '';
  reasoning = '';
  toolCalls: ChatToolCallOut[] = [];
  /** Completions' text_offset of the next token, in UTF-16 units of the returned text. */
  offset = 0;

  constructor(
    readonly index: number,
    readonly promptIndex: number,
    readonly gate: OutputGate,
    tools: { format: GenerationPlan['toolCallFormat']; completionId: string } = { format: null, completionId: '' },
    reasoning: GenerationPlan['reasoning'] = null,
  ) {
    this.tools = tools.format === null ? null : new ToolCallStream(tools.format, toolCallIdsFor(tools.completionId, index));
    this.thinking = reasoning === null ? null : new ThinkSplitter(reasoning.startsOpen);
  }

  /** Whether released text is split (reasoning or tools) before it reaches the client. */
  get splits(): boolean {
    return this.tools !== null || this.thinking !== null;
  }

  get sentLogprobs(): TokenLogprob[] {
    return this.logprobs.slice(0, this.releasedLogprobs);
  }

  /** Splits released text (end: the choice is over, flush what was held); null when nothing splits it. */
  parseOutput(text: string, end: boolean): ParsedOutput | null {
    if (!this.splits) return null;
    let reasoning = '';
    let content = text;
    if (this.thinking) {
      const a = this.thinking.push(text);
      if (end) {
        const b = this.thinking.end();
        a.reasoning += b.reasoning;
        a.content += b.content;
      }
      reasoning = a.reasoning;
      content = a.content;
    }
    let step: ParsedStep = { content, deltas: [] };
    if (this.tools) {
      step = this.tools.push(content);
      if (end) {
        const last = this.tools.end();
        step.content += last.content;
        step.deltas.push(...last.deltas);
      }
    }
    this.reasoning += reasoning;
    this.content += step.content;
    foldToolCallDeltas(this.toolCalls, step.deltas);
    return { reasoning, content: step.content, deltas: step.deltas };
  }
}

/** What a policy finish reason means for the API: 'cancelled' with the client still there is an error. */
export class PolicyCancelledError extends Error {}

export class CompletionState {
  readonly choices: ChoiceState[];
  policyVersion: string | null = null;
  model: string;
  promptTexts: Array<string | null>;
  promptTokens = 0;
  completionTokens = 0;
  policyTimings: { ttftMs: number | null; e2eMs: number | null } = { ttftMs: null, e2eMs: null };
  /** performance.now() of the first content written to the client. */
  firstContentAt: number | null = null;

  constructor(
    readonly plan: GenerationPlan,
    /** The prompt check's verdict (null: nothing was checked) and a fresh output gate per choice. */
    readonly moderation: { input: CompletionModeration['input']; gate: () => OutputGate },
  ) {
    this.model = plan.model;
    this.promptTexts = plan.requests.map(() => null);
    this.choices = [];
    for (let p = 0; p < plan.requests.length; p++) {
      for (let c = 0; c < plan.n; c++) this.choices.push(new ChoiceState(p * plan.n + c, p, moderation.gate(), { format: plan.toolCallFormat, completionId: plan.id }, plan.reasoning));
    }
  }

  get fingerprint(): string {
    return this.policyVersion ?? 'unknown';
  }

  get usage(): OpenAiUsage {
    return {
      prompt_tokens: this.promptTokens,
      completion_tokens: this.completionTokens,
      total_tokens: this.promptTokens + this.completionTokens,
    };
  }

  onStart(promptIndex: number, frame: Frame<'start'>): void {
    this.policyVersion = frame.policyVersion;
    this.model = frame.model;
    this.promptTexts[promptIndex] = frame.promptText ?? null;
    if (this.plan.echo) {
      for (const choice of this.choicesOf(promptIndex)) {
        choice.text = frame.promptText ?? '';
        choice.offset = choice.text.length;
      }
    }
  }

  /** Records the frame's tokens; its text reaches the choice only through `release`. */
  onToken(promptIndex: number, delta: TokenDelta): ChoiceState {
    const choice = this.choice(promptIndex, delta.choice);
    for (const id of delta.tokenIds) choice.tokenIds.push(id);
    if (delta.logprobs) for (const lp of delta.logprobs) choice.logprobs.push(lp);
    return choice;
  }

  /** Released text reaches the choice (and, with tools, its parser: the returned split of the text). */
  release(choice: ChoiceState, step: GateStep, end = false): ParsedOutput | null {
    choice.text += step.text;
    choice.releasedLogprobs += step.logprobs.length;
    return choice.parseOutput(step.text, end);
  }

  /** The policy finished a choice the content filter had not cut. */
  onFinish(promptIndex: number, delta: TokenDelta & { finishReason: FinishReason }): ChoiceState {
    if (delta.finishReason === 'cancelled') throw new PolicyCancelledError('the policy cancelled the generation');
    const choice = this.choice(promptIndex, delta.choice);
    choice.finishReason = delta.finishReason;
    return choice;
  }

  choiceOf(promptIndex: number, choice: number): ChoiceState {
    return this.choice(promptIndex, choice);
  }

  onEnd(frame: Frame<'end'>): void {
    this.promptTokens += frame.usage.promptTokens;
    this.completionTokens += frame.usage.completionTokens;
    const t = this.policyTimings;
    t.ttftMs = frame.timings.ttftMs === null ? t.ttftMs : Math.max(t.ttftMs ?? 0, frame.timings.ttftMs);
    t.e2eMs = Math.max(t.e2eMs ?? 0, frame.timings.e2eMs);
  }

  choicesOf(promptIndex: number): ChoiceState[] {
    return this.choices.slice(promptIndex * this.plan.n, (promptIndex + 1) * this.plan.n);
  }

  private choice(promptIndex: number, choice: number): ChoiceState {
    const state = this.choices[promptIndex * this.plan.n + choice];
    if (!state || choice >= this.plan.n) throw new Error(`policy sent choice ${choice} of a request with n=${this.plan.n}`);
    return state;
  }
}

// ---- logprobs --------------------------------------------------------------------------------------

const bytesOf = (token: string): number[] => [...Buffer.from(token, 'utf8')];

export function chatLogprobsOf(logprobs: readonly TokenLogprob[]): ChatChoiceLogprobs {
  return {
    content: logprobs.map(
      (lp): ChatTokenLogprob => ({
        token: lp.token,
        logprob: lp.logprob,
        bytes: bytesOf(lp.token),
        top_logprobs: lp.topLogprobs.map((t) => ({ token: t.token, logprob: t.logprob, bytes: bytesOf(t.token) })),
      }),
    ),
    refusal: null,
  };
}

/** Legacy completions logprobs; advances the choice's text offset. */
export function completionLogprobsOf(logprobs: readonly TokenLogprob[], choice: { offset: number }): CompletionLogprobs {
  const out: CompletionLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  for (const lp of logprobs) {
    out.tokens.push(lp.token);
    out.token_logprobs.push(lp.logprob);
    out.top_logprobs.push(Object.fromEntries(lp.topLogprobs.map((t) => [t.token, t.logprob])));
    out.text_offset.push(choice.offset);
    choice.offset += lp.token.length;
  }
  return out;
}

// ---- whole responses -------------------------------------------------------------------------------

function finished(choice: ChoiceState): OpenAiFinishReason {
  const reason = choice.finishReason ?? 'stop';
  return reason === 'stop' && choice.toolCalls.length > 0 ? 'tool_calls' : reason;
}

/** The calls a response returns: a choice cut by the content filter keeps only calls it finished before the cut. */
function returnedCalls(choice: ChoiceState): ChatToolCallOut[] {
  if (choice.finishReason !== 'content_filter') return choice.toolCalls;
  return choice.toolCalls.filter((c) => {
    try {
      JSON.parse(c.function.arguments);
      return c.function.name !== '';
    } catch {
      return false;
    }
  });
}

/** A chat choice's message: its text, or (when the output is split) its content, thinking and calls. */
function messageOf(c: ChoiceState): ChatCompletion['choices'][number]['message'] {
  if (!c.splits) return { role: 'assistant', content: c.text, refusal: null };
  const calls = returnedCalls(c);
  return {
    role: 'assistant',
    content: calls.length > 0 && c.content === '' ? null : c.content,
    refusal: null,
    ...(c.thinking !== null ? { reasoning_content: c.reasoning === '' ? null : c.reasoning } : {}),
    ...(calls.length > 0 ? { tool_calls: calls } : {}),
  };
}

export function chatCompletionOf(state: CompletionState): ChatCompletion {
  const { plan } = state;
  return {
    id: plan.id,
    object: 'chat.completion',
    created: plan.created,
    model: state.model,
    system_fingerprint: state.fingerprint,
    choices: state.choices.map((c) => ({
      index: c.index,
      message: messageOf(c),
      logprobs: plan.logprobs === 'chat' ? chatLogprobsOf(c.sentLogprobs) : null,
      finish_reason: finished(c),
    })),
    usage: state.usage,
  };
}

export function textCompletionOf(state: CompletionState): TextCompletion {
  const { plan } = state;
  return {
    id: plan.id,
    object: 'text_completion',
    created: plan.created,
    model: state.model,
    system_fingerprint: state.fingerprint,
    choices: state.choices.map((c) => {
      // Offsets restart from the echoed prompt's end (or 0) for the whole-text view.
      const cursor = { offset: plan.echo ? (state.promptTexts[c.promptIndex] ?? '').length : 0 };
      return {
        index: c.index,
        text: c.text,
        logprobs: plan.logprobs === 'completions' ? completionLogprobsOf(c.sentLogprobs, cursor) : null,
        finish_reason: finished(c),
      };
    }),
    usage: state.usage,
  };
}

// ---- streaming chunks ------------------------------------------------------------------------------

/**
 * Serialised chunks for one streaming response; `usage: null` rides along when include_usage is set. Every chunk of a
 * response shares its fields but the choice, so those are serialised once (again only if a start frame changes the
 * model or version) and each chunk serialises just its choice: the same bytes as the whole chunk's JSON.stringify.
 */
export class ChunkWriter {
  private envelope: { model: string; fingerprint: string; head: string; tail: string } | null = null;

  constructor(private readonly state: CompletionState) {}

  private chat(choice: ChatCompletionChunk['choices'][number]): string {
    return this.chunk(choice);
  }

  private text(choice: TextCompletion['choices'][number]): string {
    return this.chunk(choice);
  }

  /** `{"id", "object", "created", "model", "system_fingerprint", "choices": [choice], "usage": null?}`. */
  private chunk(choice: object): string {
    const { plan, model, fingerprint } = this.state;
    let e = this.envelope;
    if (e === null || e.model !== model || e.fingerprint !== fingerprint) {
      const object = plan.endpoint === 'chat.completions' ? 'chat.completion.chunk' : 'text_completion';
      const fields = JSON.stringify({ id: plan.id, object, created: plan.created, model, system_fingerprint: fingerprint });
      e = this.envelope = { model, fingerprint, head: `${fields.slice(0, -1)},"choices":[`, tail: plan.includeUsage ? '],"usage":null}' : ']}' };
    }
    return e.head + JSON.stringify(choice) + e.tail;
  }

  /** Chat: the assistant role opens each choice; completions with echo: the prompt opens it. */
  opening(choice: ChoiceState): string | null {
    if (this.state.plan.endpoint === 'chat.completions') {
      return this.chat({ index: choice.index, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null });
    }
    if (this.state.plan.echo && choice.text !== '') return this.text({ index: choice.index, text: choice.text, logprobs: null, finish_reason: null });
    return null;
  }

  /**
   * A content chunk of released text and the logprobs of the tokens it completes; with tools, the text's split
   * (`parsed`): its content and tool-call fragments (null when there is nothing to send).
   */
  content(choice: ChoiceState, step: GateStep, parsed: ParsedOutput | null = null): string | null {
    const { plan } = this.state;
    if (plan.endpoint === 'chat.completions') {
      const logprobs = plan.logprobs === 'chat' ? chatLogprobsOf(step.logprobs) : null;
      if (parsed === null) return this.chat({ index: choice.index, delta: { content: step.text }, logprobs, finish_reason: null });
      if (parsed.reasoning === '' && parsed.content === '' && parsed.deltas.length === 0 && (logprobs === null || step.logprobs.length === 0)) return null;
      const delta: { content?: string; reasoning_content?: string; tool_calls?: ChatToolCallDelta[] } = {};
      if (parsed.reasoning !== '') delta.reasoning_content = parsed.reasoning;
      if (parsed.content !== '' || (parsed.deltas.length === 0 && parsed.reasoning === '')) delta.content = parsed.content;
      if (parsed.deltas.length > 0) delta.tool_calls = parsed.deltas;
      return this.chat({ index: choice.index, delta, logprobs, finish_reason: null });
    }
    const logprobs = plan.logprobs === 'completions' ? completionLogprobsOf(step.logprobs, choice) : null;
    return this.text({ index: choice.index, text: step.text, logprobs, finish_reason: null });
  }

  finish(choice: ChoiceState): string {
    const reason = finished(choice);
    if (this.state.plan.endpoint === 'chat.completions') {
      return this.chat({ index: choice.index, delta: {}, logprobs: null, finish_reason: reason });
    }
    return this.text({ index: choice.index, text: '', logprobs: null, finish_reason: reason });
  }

  usage(): string {
    const { plan } = this.state;
    const object = plan.endpoint === 'chat.completions' ? 'chat.completion.chunk' : 'text_completion';
    const { id, created } = plan;
    return JSON.stringify({ id, object, created, model: this.state.model, system_fingerprint: this.state.fingerprint, choices: [], usage: this.state.usage });
  }
}

// ---- the durable record ----------------------------------------------------------------------------

export interface RecordContext {
  status: CompletionRecord['status'];
  error: CompletionRecord['error'];
  startedAt: number;
  now: number;
  keyId: string;
  requestId: string;
  gatewayInstanceId: string;
}

export function completionRecordOf(state: CompletionState, ctx: RecordContext): CompletionRecord {
  const { plan } = state;
  const ttft = state.firstContentAt;
  return {
    id: plan.id,
    endpoint: plan.endpoint,
    status: ctx.status,
    error: ctx.error,
    createdAt: new Date(plan.created * 1000).toISOString(),
    model: state.model,
    policyVersion: state.fingerprint,
    request: plan.body,
    messages: plan.messages,
    prompts: plan.prompts,
    choices: state.choices.map((c) => ({
      index: c.index,
      promptIndex: c.promptIndex,
      text: c.text,
      finishReason: c.finishReason,
      tokenIds: c.tokenIds,
      logprobs: plan.logprobs === 'none' ? null : c.logprobs.map((lp) => lp.logprob),
    })),
    usage: { promptTokens: state.promptTokens, completionTokens: state.completionTokens, totalTokens: state.promptTokens + state.completionTokens },
    latencies: {
      ttftMs: ttft === null ? null : round2(ttft - ctx.startedAt),
      e2eMs: round2(ctx.now - ctx.startedAt),
      policyTtftMs: state.policyTimings.ttftMs,
      policyE2eMs: state.policyTimings.e2eMs,
    },
    stream: plan.stream,
    user: plan.user,
    keyId: ctx.keyId,
    requestId: ctx.requestId,
    gatewayInstanceId: ctx.gatewayInstanceId,
    moderation: {
      input: state.moderation.input,
      output: state.choices.map((c) => ({ index: c.index, ...c.gate.summary() })),
    },
  };
}

const round2 = (x: number): number => Math.round(x * 100) / 100;
