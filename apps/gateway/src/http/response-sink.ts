/**
 * Where a completion's response goes: one JSON body, or Server-Sent Events written straight to Node's
 * response (Fastify is told to keep out with hijack()). It also reports the client going away before
 * the response finished, which is how the gateway knows to cancel the generation.
 */
import type { ServerResponse } from 'node:http';

export interface ResponseSink {
  /** True once SSE headers are out: from then on errors travel as `data: {"error": ...}`. */
  readonly streaming: boolean;
  /** True when the connection closed before the response ended. */
  readonly clientGone: boolean;
  onClientGone(listener: () => void): void;
  json(status: number, body: unknown, headers?: Record<string, string>): void;
  startEvents(headers?: Record<string, string>): void;
  /** One SSE event: `data: <payload>\n\n` (after `event: <name>` when named); the payload is already JSON. */
  event(payload: string, name?: string): void;
  end(): void;
}

/** The slice of Fastify's reply this needs (keeps the fastify types out of the gateway's imports). */
export interface RawReply {
  raw: ServerResponse;
  hijack(): unknown;
}

export class HttpResponseSink implements ResponseSink {
  private gone = false;
  private started = false;
  private corked = false;
  private readonly listeners: Array<() => void> = [];

  constructor(private readonly reply: RawReply) {
    reply.raw.once('close', () => {
      if (reply.raw.writableFinished) return;
      this.gone = true;
      for (const l of this.listeners) l();
    });
  }

  get streaming(): boolean {
    return this.started;
  }

  get clientGone(): boolean {
    return this.gone;
  }

  onClientGone(listener: () => void): void {
    if (this.gone) listener();
    else this.listeners.push(listener);
  }

  json(status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (this.gone || this.started) return;
    const text = JSON.stringify(body);
    this.reply.hijack();
    this.reply.raw.writeHead(status, {
      ...headers,
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(Buffer.byteLength(text)),
    });
    this.reply.raw.end(text);
  }

  /**
   * The status line and headers go out in this turn of the event loop, in the same socket write as the events
   * written in it (the first content, a chat's role chunk), not in one of their own.
   */
  startEvents(headers: Record<string, string> = {}): void {
    if (this.started) return;
    this.started = true;
    this.reply.hijack();
    this.reply.raw.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    this.corkForTurn();
    // Into the corked socket: sent at the uncork even when no event follows in this turn.
    this.reply.raw.flushHeaders();
  }

  /**
   * Events written in one turn of the event loop (every frame NATS delivered in one read) leave in one socket
   * write: the first corks the response and a setImmediate uncorks it, after the microtasks that handle the
   * rest of those frames. That is one syscall and one TCP segment per burst instead of one per token.
   */
  event(payload: string, name?: string): void {
    if (this.gone) return;
    this.corkForTurn();
    this.reply.raw.write(name === undefined ? `data: ${payload}\n\n` : `event: ${name}\ndata: ${payload}\n\n`);
  }

  /**
   * Ends the response while still corked: Node's end() adds the last chunk to the turn's events and then uncorks the
   * socket fully, so `data: [DONE]` and the end of the body leave in one write.
   */
  end(): void {
    if (!this.reply.raw.writableEnded) this.reply.raw.end();
    // end() uncorked the socket; the pending setImmediate must not uncork a later response on the same connection.
    this.corked = false;
  }

  private corkForTurn(): void {
    if (this.corked) return;
    this.corked = true;
    this.reply.raw.cork();
    setImmediate(() => this.uncork());
  }

  private uncork(): void {
    if (!this.corked) return;
    this.corked = false;
    this.reply.raw.uncork();
  }
}
