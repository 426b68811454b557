/**
 * The answerer's half of stream multiplexing (STREAM_MUX_HEADER in libs/contracts): a streamed handler's frames for
 * a caller that asked for the mux are collected per mux subject and published as one message per tick, so the policy
 * sends one message per engine step to each gateway instead of one per request. The Nest reply stream still carries
 * the final packet, on the same connection (Nest's own, attached at boot) and after a flush, so it never overtakes
 * the frames. Not the caller's half (stream-mux.demux.ts).
 */
import { Injectable, Logger } from '@nestjs/common';
import type { MsgHdrs, NatsConnection } from 'nats';
import { from, Observable } from 'rxjs';
import { STREAM_MUX_HEADER, streamMuxRouteSchema, type StreamMuxRoute } from '@flywheel/contracts';

/** nats-server's default max_payload; the connection's own limit is used once known. */
const DEFAULT_MAX_PAYLOAD = 1 << 20;

interface Pending {
  /** Each entry already JSON: `[stream, response]`. */
  parts: string[];
  /** An upper bound of the message's bytes (3 per UTF-16 unit), to flush before the server's max_payload. */
  bytes: number;
  /** The server's max_payload, read when the batch began. */
  limit: number;
}

@Injectable()
export class StreamMux {
  private readonly logger = new Logger('stream-mux');
  private connection: (() => NatsConnection) | null = null;
  private readonly pending = new Map<string, Pending>();
  private flushScheduled = false;

  /**
   * The connection the handlers' replies go out on (Nest's NATS server's): frames must share it with the final
   * packet to stay ahead of it. Until attached (a Nest app not booted by bootService) every stream replies as usual.
   */
  attach(connection: () => NatsConnection): void {
    this.connection = connection;
  }

  /** The request's mux route, or null: none asked for, or one that does not parse (then it is answered as usual). */
  routeOf(headers: MsgHdrs | undefined): StreamMuxRoute | null {
    const value = headers?.get(STREAM_MUX_HEADER);
    if (!value || this.connection === null) return null;
    const parsed = streamMuxRouteSchema.safeParse(value);
    return parsed.success ? parsed.data : null;
  }

  /**
   * The handler's reply stream: with no route, the frames themselves; with one, an Observable that sends each frame
   * through the mux and completes (or fails) after flushing them, so Nest's final packet follows the frames.
   */
  reply<T>(frames: AsyncIterable<T>, route: StreamMuxRoute | null): Observable<T> {
    if (route === null) return from(frames);
    return new Observable<T>((subscriber) => {
      const it = frames[Symbol.asyncIterator]();
      let finished = false;
      void (async () => {
        try {
          for (let r = await it.next(); !r.done; r = await it.next()) this.send(route, r.value);
          this.flush(route.subject);
          finished = true;
          subscriber.complete();
        } catch (err) {
          this.flush(route.subject);
          finished = true;
          subscriber.error(err);
        }
      })();
      // Unsubscribed before the end (the service shutting down): stop the generator, which cancels the request.
      return () => {
        if (!finished) void it.return?.(undefined);
      };
    });
  }

  private send(route: StreamMuxRoute, response: unknown): void {
    const part = JSON.stringify([route.stream, response]);
    let batch = this.pending.get(route.subject);
    if (batch && batch.bytes + 3 * part.length + 1 > batch.limit) {
      this.flush(route.subject);
      batch = undefined;
    }
    if (!batch) {
      batch = { parts: [], bytes: 2, limit: this.maxPayload() };
      this.pending.set(route.subject, batch);
    }
    batch.parts.push(part);
    batch.bytes += 3 * part.length + 1;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // A tick queued from a promise job runs once the whole job queue has drained: after every stream the engine
      // step woke has sent its frame, so one step's frames for a subject leave as one message.
      process.nextTick(() => this.flushAll());
    }
  }

  private flushAll(): void {
    this.flushScheduled = false;
    for (const subject of [...this.pending.keys()]) this.flush(subject);
  }

  private flush(subject: string): void {
    const batch = this.pending.get(subject);
    if (!batch) return;
    this.pending.delete(subject);
    try {
      this.connection!().publish(subject, encodeParts(batch.parts));
    } catch (err) {
      // The connection is closed (shutting down): the caller's idle timeout or drop detection ends its stream.
      this.logger.warn(`stream mux message to ${subject} not sent: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private maxPayload(): number {
    try {
      return this.connection?.().info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
    } catch {
      return DEFAULT_MAX_PAYLOAD;
    }
  }
}

const encoder = new TextEncoder();

function encodeParts(parts: string[]): Uint8Array {
  return encoder.encode(`[${parts.join(',')}]`);
}
