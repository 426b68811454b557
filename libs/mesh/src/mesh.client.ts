/**
 * Request helpers over raw NATS that speak NestJS's microservice wire format, so any process can call
 * a Nest @MessagePattern handler: `request` (one reply, with a timeout) and `stream` (one request, many
 * replies, ending with a final packet or an error). Replies are parsed with the caller's zod schema.
 * Neither sends into a dropped connection nor waits on one (see nats.link.ts): that is an `unavailable`
 * at once, resent within `retryUndeliveredMs` when the caller says the call is safe to repeat. A stream may ask for
 * its replies multiplexed with the connection's other streams' (`mux`, stream-mux.demux.ts).
 */
import { randomUUID } from 'node:crypto';
import { createInbox, JSONCodec, type Msg, type NatsConnection } from 'nats';
import type { z } from 'zod';
import { nestReplyPacketSchema, type NestReplyPacket, type NestRequestPacket } from '@flywheel/contracts';
import { MeshError } from './mesh.errors';
import { NatsLink } from './nats.link';
import { StreamDemux, type MuxTarget } from './stream-mux.demux';

const codec = JSONCodec<unknown>();

/** First pause before resending an undelivered request (ms); doubles per attempt, within the budget. */
const UNDELIVERED_FIRST_PAUSE_MS = 25;

export interface RequestOptions {
  timeoutMs: number;
  /**
   * For calls safe to repeat: how long (ms) to keep resending a request that certainly reached no service
   * (NATS was reconnecting so nothing was sent, or no one listened on the subject, as while the services
   * resubscribe after a NATS restart). 0 (default): fail at once with `unavailable`.
   */
  retryUndeliveredMs?: number;
}

export interface StreamOptions {
  /** Longest wait for the first reply (a replica that never picks the request up). */
  firstReplyTimeoutMs: number;
  /** Longest gap between two replies once streaming (a replica that died mid-stream). */
  idleTimeoutMs: number;
  /** Aborting stops waiting at once; the caller decides whether to tell the server (e.g. policy.cancel). */
  signal?: AbortSignal;
  /** As RequestOptions.retryUndeliveredMs, before the first reply only (nothing was started yet). */
  retryUndeliveredMs?: number;
  /**
   * Ask for the replies in the connection's stream mux: one NATS message carries the replies of every stream the
   * answerer produced in the same tick (the policy: one per engine step, not one per request). An answerer that
   * does not multiplex replies as usual, so this is always safe to ask.
   */
  mux?: boolean;
}

/** A request no service received: safe to send again. Callers see a plain MeshError('unavailable'). */
class UndeliveredError extends MeshError {
  constructor(message: string) {
    super('unavailable', message);
  }
}

export class MeshClient {
  private readonly link: NatsLink;

  constructor(private readonly nc: NatsConnection) {
    this.link = NatsLink.of(nc);
  }

  get connection(): NatsConnection {
    return this.nc;
  }

  async request<S extends z.ZodType>(subject: string, data: unknown, reply: S, opts: RequestOptions): Promise<z.infer<S>> {
    const packet: NestRequestPacket = { pattern: subject, data, id: randomUUID() };
    const packetIn = await resendUndelivered(opts.retryUndeliveredMs, undefined, async () => decodeReply(await this.requestOnce(subject, packet, opts.timeoutMs), subject));
    if (packetIn.err !== undefined && packetIn.err !== null) throw MeshError.fromWire(packetIn.err);
    const parsed = reply.safeParse(packetIn.response);
    if (!parsed.success) throw new MeshError('internal', `malformed reply on ${subject}: ${parsed.error.issues[0]?.message}`);
    return parsed.data;
  }

  /** Yields each streamed reply parsed with `frame`; throws MeshError on an error packet or a timeout. */
  async *stream<S extends z.ZodType>(subject: string, data: unknown, frame: S, opts: StreamOptions): AsyncGenerator<z.infer<S>> {
    const replies = new ReplyQueue(subject, this.link, opts.signal);
    // Muxed, the replies come through the connection's one mux subscription; otherwise through a callback
    // subscription of the stream's own. Either way each reply goes straight into the stream's queue, with no async
    // iterator (and its promise per message) between nats.js and the caller.
    const mux = opts.mux ? StreamDemux.of(this.nc).bind(replies) : null;
    const inbox = mux?.inbox ?? createInbox();
    const sub = mux ? null : this.nc.subscribe(inbox, { callback: (err, msg) => (err ? replies.fail(natsToMeshError(err, subject)) : replies.push(msg)) });
    void sub?.closed.then(
      () => replies.closed(),
      () => replies.closed(),
    );
    const packet: NestRequestPacket = { pattern: subject, data, id: randomUUID() };
    try {
      let reply = await resendUndelivered(opts.retryUndeliveredMs, opts.signal, async () => {
        this.assertConnected(subject);
        this.nc.publish(subject, codec.encode(packet), { reply: inbox, headers: mux?.headers });
        return decodeReply(await replies.next(opts.firstReplyTimeoutMs), subject);
      });
      for (;;) {
        if (reply.err !== undefined && reply.err !== null) throw MeshError.fromWire(reply.err);
        if (reply.response !== undefined) {
          const parsed = frame.safeParse(reply.response);
          if (!parsed.success) throw new MeshError('internal', `malformed frame on ${subject}: ${parsed.error.issues[0]?.message}`);
          yield parsed.data;
        }
        if (reply.isDisposed) return;
        reply = decodeReply(await replies.next(opts.idleTimeoutMs), subject);
      }
    } finally {
      mux?.close();
      sub?.unsubscribe();
      replies.dispose();
    }
  }

  /** A publish now would be dropped by nats.js at its next reconnect attempt: refuse instead. */
  private assertConnected(subject: string): void {
    if (!this.link.connected) throw new UndeliveredError(`NATS is reconnecting; ${subject} was not sent`);
  }

  /**
   * One request on the connection's demux subscription (stream-mux.demux.ts), the way a muxed stream waits for its
   * first reply: its own reply subject under the shared wildcard, one timer, and the end of the wait when the
   * connection drops (the reply could no longer reach us). Not nc.request, which builds three error objects per call
   * (its timeout, its cancel and, for a 503, its no-responders error) whether or not anything fails.
   */
  private async requestOnce(subject: string, packet: NestRequestPacket, timeoutMs: number): Promise<QueuedReply> {
    this.assertConnected(subject);
    const reply = new ReplyQueue(subject, this.link, undefined);
    const binding = StreamDemux.of(this.nc).bind(reply);
    try {
      this.nc.publish(subject, codec.encode(packet), { reply: binding.inbox });
      return await reply.next(timeoutMs);
    } finally {
      binding.close();
      reply.dispose();
    }
  }
}

const aborted = () => new MeshError('cancelled', 'request aborted');

/** A reply that came through the stream mux: already decoded, and never a final packet. */
class MuxedReply {
  constructor(readonly response: unknown) {}
}

/** A reply from the inbox (still bytes) or from the mux (decoded). */
type QueuedReply = Msg | MuxedReply;

/**
 * One stream's replies in arrival order, from its inbox and its mux alike, and the wait for the next one: a
 * timeout, an abort or a dropped connection ends the wait as a MeshError. Made once per stream rather than per
 * reply: one timer (refreshed per wait), one abort listener and one drop listener, so a reply costs a queue push
 * and at most one promise.
 */
class ReplyQueue implements MuxTarget {
  private readonly queued: QueuedReply[] = [];
  private waiter: { resolve: (reply: QueuedReply) => void; reject: (err: MeshError) => void } | null = null;
  /** Why no more replies can come (a drop, a closed subscription); replies already queued still go out first. */
  private failure: MeshError | null = null;
  private timer: NodeJS.Timeout | null = null;
  private timerMs = 0;
  private readonly stopDrop: () => void;
  private readonly onAbort = () => this.reject(aborted());

  constructor(
    private readonly subject: string,
    link: NatsLink,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.stopDrop = link.onDrop(() => this.fail(new MeshError('unavailable', `the connection to NATS dropped while waiting on ${subject}`)));
    signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  push(reply: QueuedReply): void {
    const waiter = this.waiter;
    if (waiter === null) return void this.queued.push(reply);
    this.waiter = null;
    waiter.resolve(reply);
  }

  pushMuxed(response: unknown): void {
    this.push(new MuxedReply(response));
  }

  /** No reply can come any more: a wait now (or the one under way) fails once the queue is empty. */
  fail(err: MeshError): void {
    this.failure ??= err;
    this.reject(this.failure);
  }

  /** The subscription closed (the connection closed, or the stream ended and unsubscribed). */
  closed(): void {
    this.fail(new MeshError('unavailable', `stream on ${this.subject} closed without a final reply`));
  }

  /** The next reply; an abort wins over replies already queued ("aborting stops waiting at once"). */
  next(waitMs: number): Promise<QueuedReply> {
    if (this.signal?.aborted) return Promise.reject(aborted());
    if (this.queued.length > 0) return Promise.resolve(this.queued.shift()!);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<QueuedReply>((resolve, reject) => {
      this.waiter = { resolve, reject };
      this.arm(waitMs);
    });
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.stopDrop();
    this.signal?.removeEventListener('abort', this.onAbort);
    this.waiter = null;
  }

  /** Starts the wait's clock; the one timer is refreshed rather than made anew, and fires only on a wait. */
  private arm(waitMs: number): void {
    if (this.timer !== null && this.timerMs === waitMs) return void this.timer.refresh();
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerMs = waitMs;
    this.timer = setTimeout(() => this.reject(new MeshError('timeout', `no reply on ${this.subject} for ${waitMs} ms`)), waitMs);
  }

  private reject(err: MeshError): void {
    const waiter = this.waiter;
    if (waiter === null) return;
    this.waiter = null;
    waiter.reject(err);
  }
}

/** Runs `attempt`, running it again after a growing pause while it fails undelivered and budget is left. */
async function resendUndelivered<T>(budgetMs: number | undefined, signal: AbortSignal | undefined, attempt: () => Promise<T>): Promise<T> {
  const deadline = performance.now() + (budgetMs ?? 0);
  for (let n = 0; ; n++) {
    try {
      return await attempt();
    } catch (err) {
      const left = deadline - performance.now();
      if (!(err instanceof UndeliveredError) || left <= 0 || signal?.aborted) throw err;
      await new Promise((r) => setTimeout(r, Math.min(left, UNDELIVERED_FIRST_PAUSE_MS * 2 ** n)));
    }
  }
}

function decodeReply(msg: QueuedReply, subject: string): Omit<NestReplyPacket, 'id'> {
  if (msg instanceof MuxedReply) return msg;
  if (msg.headers?.hasError && msg.headers.code === 503) {
    throw new UndeliveredError(`no service is listening on ${subject}`);
  }
  let raw: unknown;
  try {
    raw = codec.decode(msg.data);
  } catch {
    throw new MeshError('internal', `reply on ${subject} is not JSON`);
  }
  const parsed = nestReplyPacketSchema.safeParse(raw);
  if (!parsed.success) throw new MeshError('internal', `reply on ${subject} is not a mesh reply packet`);
  return parsed.data;
}

/** A stream subscription's error (its own timeouts are ReplyQueue's, never nats.js's). */
function natsToMeshError(err: unknown, subject: string): MeshError {
  const code = (err as { code?: string })?.code;
  if (code === '503') return new UndeliveredError(`no service is listening on ${subject}`);
  if (code === 'CONNECTION_CLOSED' || code === 'CONNECTION_DRAINING' || code === 'DISCONNECT') {
    return new MeshError('unavailable', `NATS connection unavailable (${code})`);
  }
  return new MeshError('unavailable', `request on ${subject} failed: ${(err as Error)?.message ?? String(err)}`);
}

/** Fire-and-forget publish in Nest's event format (`@EventPattern` handlers receive `data`). */
export function emitEvent(nc: NatsConnection, subject: string, data: unknown): void {
  nc.publish(subject, codec.encode({ pattern: subject, data }));
}
