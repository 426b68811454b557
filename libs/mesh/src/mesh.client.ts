/**
 * Request helpers over raw NATS that speak NestJS's microservice wire format, so any process can call
 * a Nest @MessagePattern handler: `request` (one reply, with a timeout) and `stream` (one request, many
 * replies, ending with a final packet or an error). Replies are parsed with the caller's zod schema.
 */
import { randomUUID } from 'node:crypto';
import { createInbox, JSONCodec, type Msg, type NatsConnection } from 'nats';
import type { z } from 'zod';
import { nestReplyPacketSchema, type NestRequestPacket } from '@flywheel/contracts';
import { MeshError } from './mesh.errors';

const codec = JSONCodec<unknown>();

export interface RequestOptions {
  timeoutMs: number;
}

export interface StreamOptions {
  /** Longest wait for the first reply (a replica that never picks the request up). */
  firstReplyTimeoutMs: number;
  /** Longest gap between two replies once streaming (a replica that died mid-stream). */
  idleTimeoutMs: number;
  /** Aborting stops waiting at once; the caller decides whether to tell the server (e.g. policy.cancel). */
  signal?: AbortSignal;
}

export class MeshClient {
  constructor(private readonly nc: NatsConnection) {}

  get connection(): NatsConnection {
    return this.nc;
  }

  async request<S extends z.ZodType>(subject: string, data: unknown, reply: S, opts: RequestOptions): Promise<z.infer<S>> {
    const packet: NestRequestPacket = { pattern: subject, data, id: randomUUID() };
    let msg: Msg;
    try {
      msg = await this.nc.request(subject, codec.encode(packet), { timeout: opts.timeoutMs });
    } catch (err) {
      throw natsToMeshError(err, subject, opts.timeoutMs);
    }
    const packetIn = decodeReply(msg, subject);
    if (packetIn.err !== undefined && packetIn.err !== null) throw MeshError.fromWire(packetIn.err);
    const parsed = reply.safeParse(packetIn.response);
    if (!parsed.success) throw new MeshError('internal', `malformed reply on ${subject}: ${parsed.error.issues[0]?.message}`);
    return parsed.data;
  }

  /** Yields each streamed reply parsed with `frame`; throws MeshError on an error packet or a timeout. */
  async *stream<S extends z.ZodType>(subject: string, data: unknown, frame: S, opts: StreamOptions): AsyncGenerator<z.infer<S>> {
    const inbox = createInbox();
    const sub = this.nc.subscribe(inbox);
    const packet: NestRequestPacket = { pattern: subject, data, id: randomUUID() };
    const iterator = sub[Symbol.asyncIterator]();
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      this.nc.publish(subject, codec.encode(packet), { reply: inbox });
      let first = true;
      for (;;) {
        const wait = first ? opts.firstReplyTimeoutMs : opts.idleTimeoutMs;
        const next = await new Promise<IteratorResult<Msg>>((resolve, reject) => {
          timer = setTimeout(
            () => reject(new MeshError('timeout', `no reply on ${subject} for ${wait} ms`)),
            wait,
          );
          if (opts.signal) {
            if (opts.signal.aborted) return reject(new MeshError('cancelled', 'request aborted'));
            onAbort = () => reject(new MeshError('cancelled', 'request aborted'));
            opts.signal.addEventListener('abort', onAbort, { once: true });
          }
          iterator.next().then(resolve, reject);
        }).finally(() => {
          clearTimeout(timer);
          if (onAbort) opts.signal?.removeEventListener('abort', onAbort);
        });
        if (next.done) throw new MeshError('unavailable', `stream on ${subject} closed without a final reply`);
        first = false;
        const reply = decodeReply(next.value, subject);
        if (reply.err !== undefined && reply.err !== null) throw MeshError.fromWire(reply.err);
        if (reply.response !== undefined) {
          const parsed = frame.safeParse(reply.response);
          if (!parsed.success) throw new MeshError('internal', `malformed frame on ${subject}: ${parsed.error.issues[0]?.message}`);
          yield parsed.data;
        }
        if (reply.isDisposed) return;
      }
    } finally {
      sub.unsubscribe();
    }
  }
}

function decodeReply(msg: Msg, subject: string) {
  if (msg.headers?.hasError && msg.headers.code === 503) {
    throw new MeshError('unavailable', `no service is listening on ${subject}`);
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

function natsToMeshError(err: unknown, subject: string, timeoutMs: number): MeshError {
  const code = (err as { code?: string })?.code;
  if (code === '503') return new MeshError('unavailable', `no service is listening on ${subject}`);
  if (code === 'TIMEOUT' || code === 'REQUEST_TIMEOUT') return new MeshError('timeout', `no reply on ${subject} within ${timeoutMs} ms`);
  if (code === 'CONNECTION_CLOSED' || code === 'CONNECTION_DRAINING' || code === 'DISCONNECT') {
    return new MeshError('unavailable', `NATS connection unavailable (${code})`);
  }
  return new MeshError('unavailable', `request on ${subject} failed: ${(err as Error)?.message ?? String(err)}`);
}

/** Fire-and-forget publish in Nest's event format (`@EventPattern` handlers receive `data`). */
export function emitEvent(nc: NatsConnection, subject: string, data: unknown): void {
  nc.publish(subject, codec.encode({ pattern: subject, data }));
}
