/**
 * POST /v1/responses: parses the body, rebuilds the conversation of previous_response_id from its completion
 * record, and runs the request as a chat completion through GenerationService (same moderation, recording, limits
 * and constrained decoding), with a sink that turns the chat answer into a response object or `response.*` events.
 * Not the shapes (responses.mapping.ts).
 */
import { Injectable } from '@nestjs/common';
import {
  responseCreateRequestSchema,
  type ChatCompletion,
  type ChatCompletionChunk,
  type ChatRequestMessage,
  type ResponseCreateRequest,
  type ResponseObject,
} from '@flywheel/contracts';
import { fromZodError, OpenAiError } from '../http/openai-error';
import type { RequestContext } from '../http/request-context';
import type { ResponseSink } from '../http/response-sink';
import { StoreHandle } from '../store/store.handle';
import { GenerationService } from './generation.service';
import { PolicyClient } from './policy.client';
import {
  chatBodyOf,
  chatTurnsOfInput,
  completionIdOf,
  historyOfPrevious,
  ResponseEventTranslator,
  responseIdOf,
  responseOfCompletion,
  responsesErrorOf,
  responseShell,
} from './responses.mapping';
import { parseToolCalls, toolCallIdsFor } from './tool-calls.parser';

/** The record of a response reaches the store a moment after the response ends (JetStream → store writer). */
const PREVIOUS_WAIT_MS = 3000;
const PREVIOUS_POLL_MS = 100;

@Injectable()
export class ResponsesService {
  constructor(
    private readonly generation: GenerationService,
    private readonly policy: PolicyClient,
    private readonly store: StoreHandle,
  ) {}

  async create(body: unknown, ctx: RequestContext, sink: ResponseSink): Promise<void> {
    const parsed = responseCreateRequestSchema.safeParse(body);
    if (!parsed.success) throw fromZodError(parsed.error, body);
    const req = parsed.data;
    const history = req.previous_response_id != null ? await this.previousConversation(req.previous_response_id) : [];
    const chat = chatBodyOf(req, history);
    try {
      await this.generation.chatCompletion(chat, ctx, new ResponsesSink(sink, req));
    } catch (err) {
      if (!(err instanceof OpenAiError)) throw err;
      const turns = chatTurnsOfInput(req.input);
      throw responsesErrorOf(err, chat.messages.length - turns.messages.length, turns.origin, typeof req.input === 'string');
    }
  }

  /** The previous response's turns and its output, from its completion record. */
  private async previousConversation(responseId: string): Promise<ChatRequestMessage[]> {
    const completionId = completionIdOf(responseId);
    const notFound = () => new OpenAiError(404, 'invalid_request_error', `Previous response with id '${responseId}' not found.`, 'previous_response_id', 'previous_response_not_found');
    if (completionId === null) throw notFound();
    const db = this.store.get().db;
    const deadline = Date.now() + PREVIOUS_WAIT_MS;
    for (;;) {
      const row = await db.selectFrom('completions').select(['request', 'choices', 'endpoint', 'outcome']).where('id', '=', completionId).executeTakeFirst();
      if (row) {
        // store: false keeps a response from being continued (it is recorded all the same).
        if (row.endpoint !== 'chat.completions' || row.outcome !== 'completed' || (row.request as { store?: unknown }).store === false) throw notFound();
        const choice = (row.choices as Array<{ text?: unknown }>)[0];
        const text = typeof choice?.text === 'string' ? choice.text : '';
        const request = row.request as Record<string, unknown>;
        const hadTools = Array.isArray(request.tools) && request.tools.length > 0 && request.tool_choice !== 'none';
        if (!hadTools) return historyOfPrevious(request, { content: text, toolCalls: [] });
        const format = (await this.policy.info()).toolCallFormat;
        const parsed = parseToolCalls(text, format, toolCallIdsFor(completionId, 0));
        return historyOfPrevious(request, { content: parsed.content, toolCalls: parsed.toolCalls });
      }
      if (Date.now() >= deadline) throw notFound();
      await new Promise((resolve) => setTimeout(resolve, PREVIOUS_POLL_MS));
    }
  }
}

/** Receives what the chat path writes and writes the Responses API's answer instead. */
class ResponsesSink implements ResponseSink {
  private translator: ResponseEventTranslator | null = null;
  private readonly createdAt = Math.floor(Date.now() / 1000);

  constructor(
    private readonly inner: ResponseSink,
    private readonly req: ResponseCreateRequest,
  ) {}

  get streaming(): boolean {
    return this.inner.streaming;
  }

  get clientGone(): boolean {
    return this.inner.clientGone;
  }

  onClientGone(listener: () => void): void {
    this.inner.onClientGone(listener);
  }

  json(status: number, body: unknown, headers?: Record<string, string>): void {
    if (status !== 200) return this.inner.json(status, body, headers);
    const completion = body as ChatCompletion;
    this.inner.json(200, responseOfCompletion(this.shell(completion.id), completion), headers);
  }

  startEvents(headers?: Record<string, string>): void {
    this.inner.startEvents(headers);
  }

  event(payload: string): void {
    if (payload === '[DONE]') {
      if (this.translator) for (const e of this.translator.end().events) this.send(e);
      return;
    }
    const data = JSON.parse(payload) as (ChatCompletionChunk & { usage?: ChatCompletion['usage'] | null }) | { error: { message: string; code?: string | null } };
    if ('error' in data) {
      const translator = this.translator ?? new ResponseEventTranslator(this.shell('chatcmpl-unknown'));
      this.send(translator.failed(data.error));
      return;
    }
    if (!this.translator) {
      this.translator = new ResponseEventTranslator(this.shell(data.id));
      for (const e of this.translator.start()) this.send(e);
    }
    for (const e of this.translator.chunk(data)) this.send(e);
  }

  end(): void {
    this.inner.end();
  }

  private shell(completionId: string): ResponseObject {
    return responseShell(this.req, responseIdOf(completionId), this.createdAt);
  }

  private send(event: object): void {
    this.inner.event(JSON.stringify(event), (event as { type: string }).type);
  }
}
