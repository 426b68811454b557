/**
 * The Responses API on top of chat completions: a /v1/responses body (plus the conversation of its
 * previous_response_id) becomes a chat-completions body; a chat completion becomes a response object; a stream of
 * chat chunks becomes the `response.*` events, in OpenAI's order. Plain functions and one stateful translator; the
 * service (responses.service.ts) does the I/O.
 */
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatRequestMessage,
  ResponseCreateRequest,
  ResponseFunctionCall,
  ResponseObject,
  ResponseOutputItem,
  ResponseOutputMessage,
} from '@flywheel/contracts';
import { OpenAiError } from '../http/openai-error';

/** Marks the system turn that holds `instructions`: a later response that continues this one drops it, as OpenAI does. */
export const INSTRUCTIONS_NAME = 'instructions';

/** resp_<uuid> ↔ chatcmpl-<uuid>: a response is recorded under its chat completion's id. */
export const responseIdOf = (completionId: string): string => `resp_${completionId.replace(/^chatcmpl-/, '')}`;
export const completionIdOf = (responseId: string): string | null => (responseId.startsWith('resp_') ? `chatcmpl-${responseId.slice(5)}` : null);

type ChatBody = Record<string, unknown> & { messages: ChatRequestMessage[] };

/** The input items as chat turns; consecutive function calls become one assistant turn's tool_calls. */
export function chatMessagesOfInput(input: ResponseCreateRequest['input']): ChatRequestMessage[] {
  return chatTurnsOfInput(input).messages;
}

/** The chat turns of the input items and, per turn, the input item it came from (the first, for merged calls). */
export function chatTurnsOfInput(input: ResponseCreateRequest['input']): { messages: ChatRequestMessage[]; origin: number[] } {
  if (typeof input === 'string') return { messages: [{ role: 'user', content: input }], origin: [0] };
  const out: ChatRequestMessage[] = [];
  const origin: number[] = [];
  for (const [index, item] of input.entries()) {
    const before = out.length;
    if (item.type === 'function_call') {
      const last = out[out.length - 1];
      const call = { id: item.call_id, type: 'function' as const, function: { name: item.name, arguments: item.arguments } };
      if (last?.role === 'assistant') last.tool_calls = [...(last.tool_calls ?? []), call];
      else out.push({ role: 'assistant', content: null, tool_calls: [call] });
    } else if (item.type === 'function_call_output') {
      out.push({ role: 'tool', tool_call_id: item.call_id, content: item.output });
    } else {
      const content = typeof item.content === 'string' ? item.content : item.content.map((p) => p.text).join('');
      out.push({ role: item.role, content });
    }
    if (out.length > before) origin.push(index);
  }
  return { messages: out, origin };
}

/**
 * A chat-path error in the Responses API's names: a chat turn of the input becomes `input[j]` (or `input`), other
 * turns (instructions, the previous response's) `previous_response_id`, and the chat parameters their Responses
 * spellings. `inputStart` is the first chat turn that came from `input`.
 */
export function responsesErrorOf(err: OpenAiError, inputStart: number, origin: readonly number[], inputIsText: boolean): OpenAiError {
  const rename = (text: string): string =>
    text
      .replace(/messages\[(\d+)\]/g, (_, k: string) => {
        const turn = Number(k) - inputStart;
        if (turn < 0) return 'previous_response_id';
        return inputIsText ? 'input' : `input[${origin[turn] ?? turn}]`;
      })
      .replace(/\bmessages\b/g, 'input')
      .replace(/\.tool_call_id\b/g, '.call_id')
      .replace(/\btool_call_id\b/g, 'call_id')
      .replace(/tools\[(\d+)\]\.function\./g, 'tools[$1].')
      .replace(/tool_choice\.function\.name/g, 'tool_choice.name')
      .replace(/response_format\.json_schema\./g, 'text.format.')
      .replace(/response_format/g, 'text.format')
      .replace(/max_completion_tokens/g, 'max_output_tokens');
  const earlier = err.param !== null && /^messages\[(\d+)\]/.exec(err.param);
  const param =
    err.param === null ? null : earlier && Number(earlier[1]) < inputStart ? 'previous_response_id' : earlier && inputIsText ? 'input' : rename(err.param);
  return new OpenAiError(err.status, err.type, rename(err.message), param, err.code, err.headers);
}

/** The chat-completions body a response runs as; `history` is the previous response's conversation, its output included. */
export function chatBodyOf(req: ResponseCreateRequest, history: ChatRequestMessage[]): ChatBody {
  const messages: ChatRequestMessage[] = [
    ...(req.instructions != null ? [{ role: 'system' as const, content: req.instructions, name: INSTRUCTIONS_NAME }] : []),
    ...history,
    ...chatMessagesOfInput(req.input),
  ];
  const format = req.text?.format;
  const choice = req.tool_choice;
  return {
    model: req.model,
    messages,
    ...(req.tools && req.tools.length > 0
      ? {
          tools: req.tools.map((t) => ({
            type: 'function',
            function: { name: t.name, ...(t.description != null ? { description: t.description } : {}), ...(t.parameters != null ? { parameters: t.parameters } : {}), ...(t.strict != null ? { strict: t.strict } : {}) },
          })),
        }
      : {}),
    ...(choice != null ? { tool_choice: typeof choice === 'string' ? choice : { type: 'function', function: { name: choice.name } } } : {}),
    ...(req.parallel_tool_calls != null ? { parallel_tool_calls: req.parallel_tool_calls } : {}),
    ...(format != null && format.type !== 'text'
      ? {
          response_format:
            format.type === 'json_object'
              ? { type: 'json_object' }
              : { type: 'json_schema', json_schema: { name: format.name, schema: format.schema, ...(format.strict != null ? { strict: format.strict } : {}) } },
        }
      : {}),
    ...(req.temperature != null ? { temperature: req.temperature } : {}),
    ...(req.top_p != null ? { top_p: req.top_p } : {}),
    ...(req.max_output_tokens != null ? { max_completion_tokens: req.max_output_tokens } : {}),
    ...(req.stream === true ? { stream: true, stream_options: { include_usage: true } } : {}),
    ...(req.user != null ? { user: req.user } : {}),
    ...(req.metadata != null ? { metadata: req.metadata } : {}),
    // Recorded either way (the flywheel keeps all traffic); store: false only keeps it from being continued.
    ...(req.store != null ? { store: req.store } : {}),
  };
}

/**
 * The conversation a previous response leaves: its chat turns without its instructions, then its output (text and
 * calls, with the ids its client was sent).
 */
export function historyOfPrevious(previousBody: Record<string, unknown>, output: { content: string | null; toolCalls: ChatRequestMessage['tool_calls'] }): ChatRequestMessage[] {
  const messages = Array.isArray(previousBody.messages) ? (previousBody.messages as ChatRequestMessage[]) : [];
  const kept = messages.filter((m) => !(m.role === 'system' && m.name === INSTRUCTIONS_NAME));
  const calls = output.toolCalls ?? [];
  return [...kept, { role: 'assistant', content: output.content, ...(calls.length > 0 ? { tool_calls: calls } : {}) }];
}

export function responseShell(req: ResponseCreateRequest, id: string, createdAt: number): ResponseObject {
  return {
    id,
    object: 'response',
    created_at: createdAt,
    status: 'in_progress',
    error: null,
    incomplete_details: null,
    instructions: req.instructions ?? null,
    max_output_tokens: req.max_output_tokens ?? null,
    model: req.model,
    output: [],
    parallel_tool_calls: req.parallel_tool_calls ?? true,
    previous_response_id: req.previous_response_id ?? null,
    temperature: req.temperature ?? 1,
    top_p: req.top_p ?? 1,
    tool_choice: req.tool_choice ?? (req.tools && req.tools.length > 0 ? 'auto' : 'none'),
    tools: req.tools ?? [],
    text: { format: req.text?.format ?? { type: 'text' } },
    truncation: 'disabled',
    store: req.store ?? true,
    metadata: req.metadata ?? {},
    user: req.user ?? null,
    usage: null,
  };
}

const itemId = (prefix: string, responseId: string, index: number): string => `${prefix}_${responseId.slice(5)}_${index}`;

function finishStatus(finish: string | null, shell: ResponseObject): Pick<ResponseObject, 'status' | 'incomplete_details'> {
  if (finish === 'length') return { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } };
  if (finish === 'content_filter') return { status: 'incomplete', incomplete_details: { reason: 'content_filter' } };
  return { status: 'completed', incomplete_details: shell.incomplete_details };
}

/** A whole chat completion (one choice) as the response object. */
export function responseOfCompletion(shell: ResponseObject, completion: ChatCompletion): ResponseObject {
  const choice = completion.choices[0];
  if (!choice) throw OpenAiError.invalid('the generation produced no choice');
  const status = finishStatus(choice.finish_reason, shell);
  const itemStatus = status.status === 'completed' ? 'completed' : 'incomplete';
  const output: ResponseOutputItem[] = [];
  const text = choice.message.content;
  if (text !== null && (text !== '' || !choice.message.tool_calls)) {
    output.push({ type: 'message', id: itemId('msg', shell.id, 0), status: itemStatus, role: 'assistant', content: [{ type: 'output_text', text, annotations: [] }] });
  }
  for (const call of choice.message.tool_calls ?? []) {
    output.push({ type: 'function_call', id: itemId('fc', shell.id, output.length), call_id: call.id, name: call.function.name, arguments: call.function.arguments, status: itemStatus });
  }
  return { ...shell, ...status, model: completion.model, output, usage: usageOf(completion.usage) };
}

function usageOf(u: { prompt_tokens: number; completion_tokens: number; total_tokens: number }): ResponseObject['usage'] {
  return {
    input_tokens: u.prompt_tokens,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: u.completion_tokens,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: u.total_tokens,
  };
}

/**
 * Chat chunks in, `response.*` events out (each an object with `type` and `sequence_number`): the text becomes one
 * message item, each tool call a function_call item, opened when their first delta arrives and closed at the end.
 */
export class ResponseEventTranslator {
  private seq = 0;
  private readonly output: ResponseOutputItem[] = [];
  private message: { item: ResponseOutputMessage; index: number } | null = null;
  private readonly calls = new Map<number, { item: ResponseFunctionCall; index: number }>();
  private finish: string | null = null;
  private usage: ResponseObject['usage'] = null;

  constructor(private shell: ResponseObject) {}

  start(): object[] {
    return [this.event('response.created', { response: this.shell }), this.event('response.in_progress', { response: this.shell })];
  }

  chunk(chunk: ChatCompletionChunk & { usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null }): object[] {
    const out: object[] = [];
    if (chunk.usage) this.usage = usageOf(chunk.usage);
    const choice = chunk.choices[0];
    if (!choice) return out;
    this.shell = { ...this.shell, model: chunk.model };
    const text = choice.delta.content;
    if (text !== undefined && text !== '') {
      const m = this.openMessage(out);
      m.item.content[0]!.text += text;
      out.push(this.event('response.output_text.delta', { item_id: m.item.id, output_index: m.index, content_index: 0, delta: text, logprobs: [] }));
    }
    for (const d of choice.delta.tool_calls ?? []) {
      let call = this.calls.get(d.index);
      if (!call) {
        const item: ResponseFunctionCall = { type: 'function_call', id: itemId('fc', this.shell.id, this.output.length), call_id: d.id ?? '', name: d.function?.name ?? '', arguments: '', status: 'incomplete' };
        call = { item, index: this.output.length };
        this.output.push(item);
        this.calls.set(d.index, call);
        out.push(this.event('response.output_item.added', { output_index: call.index, item: { ...item } }));
      }
      const args = d.function?.arguments ?? '';
      if (args !== '') {
        call.item.arguments += args;
        out.push(this.event('response.function_call_arguments.delta', { item_id: call.item.id, output_index: call.index, delta: args }));
      }
    }
    if (choice.finish_reason) this.finish = choice.finish_reason;
    return out;
  }

  /** The closing events and the final response object. */
  end(): { events: object[]; response: ResponseObject } {
    const out: object[] = [];
    const status = finishStatus(this.finish, this.shell);
    const itemStatus = status.status === 'completed' ? 'completed' : 'incomplete';
    if (this.message === null && this.calls.size === 0) this.openMessage(out);
    if (this.message) {
      const { item, index } = this.message;
      item.status = itemStatus;
      const part = item.content[0]!;
      out.push(this.event('response.output_text.done', { item_id: item.id, output_index: index, content_index: 0, text: part.text, logprobs: [] }));
      out.push(this.event('response.content_part.done', { item_id: item.id, output_index: index, content_index: 0, part: { ...part } }));
      out.push(this.event('response.output_item.done', { output_index: index, item: { ...item, content: [{ ...part }] } }));
    }
    for (const { item, index } of [...this.calls.values()].sort((a, b) => a.index - b.index)) {
      item.status = itemStatus;
      out.push(this.event('response.function_call_arguments.done', { item_id: item.id, output_index: index, arguments: item.arguments }));
      out.push(this.event('response.output_item.done', { output_index: index, item: { ...item } }));
    }
    const response: ResponseObject = { ...this.shell, ...status, output: this.output, usage: this.usage };
    out.push(this.event(status.status === 'completed' ? 'response.completed' : 'response.incomplete', { response }));
    return { events: out, response };
  }

  failed(error: { message: string; code?: string | null }): object {
    return this.event('error', { code: error.code ?? null, message: error.message, param: null });
  }

  private openMessage(out: object[]): { item: ResponseOutputMessage; index: number } {
    if (this.message) return this.message;
    const item: ResponseOutputMessage = { type: 'message', id: itemId('msg', this.shell.id, this.output.length), status: 'incomplete', role: 'assistant', content: [] };
    this.message = { item, index: this.output.length };
    this.output.push(item);
    out.push(this.event('response.output_item.added', { output_index: this.message.index, item: { ...item, content: [] } }));
    item.content.push({ type: 'output_text', text: '', annotations: [] });
    out.push(this.event('response.content_part.added', { item_id: item.id, output_index: this.message.index, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } }));
    return this.message;
  }

  private event(type: string, body: object): object {
    return { type, sequence_number: this.seq++, ...body };
  }
}
