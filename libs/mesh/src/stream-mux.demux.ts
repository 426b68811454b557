/**
 * The caller's half of stream multiplexing (STREAM_MUX_HEADER in libs/contracts): one wildcard subscription per
 * connection, `<prefix>.*`, carries both the mux messages (`<prefix>.m`) and each muxed stream's own replies (its
 * final packet, or every reply from an answerer that does not multiplex) on `<prefix>.<stream number>`. A mux message
 * is decoded once and each entry goes to its stream's queue; a reply for a stream that has ended (aborted, timed
 * out) is dropped. A stream costs no subscription of its own: no SUB and UNSUB per request. MeshClient.request waits
 * for its one reply here too. Not the queue a stream reads (mesh.client.ts) nor the answerer's half
 * (stream-mux.publisher.ts).
 */
import { createInbox, headers, JSONCodec, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from 'nats';
import { STREAM_MUX_HEADER, streamMuxMessageSchema } from '@flywheel/contracts';
import { MeshError } from './mesh.errors';

const codec = JSONCodec<unknown>();

/** Where a stream's replies go: its reply queue. */
export interface MuxTarget {
  /** A reply on the stream's own subject (undecoded). */
  push(msg: Msg): void;
  /** An entry of a mux message. */
  pushMuxed(response: unknown): void;
  fail(err: MeshError): void;
  /** The subscription closed (the connection closed): no reply can come any more. */
  closed(): void;
}

export interface MuxBinding {
  /** The request's reply subject. */
  readonly inbox: string;
  /** The request's headers: they name the mux subject and this stream's number. */
  readonly headers: MsgHdrs;
  /** Stops delivering to the stream; later replies for it are dropped. */
  close(): void;
}

const demuxes = new WeakMap<NatsConnection, StreamDemux>();

export class StreamDemux {
  private readonly prefix = createInbox();
  private readonly muxSubject = `${this.prefix}.m`;
  private readonly streams = new Map<number, MuxTarget>();
  private nextStream = 0;
  private sub: Subscription | null = null;

  private constructor(private readonly nc: NatsConnection) {}

  /** One per connection: every MeshClient on it shares the subscription (and so the batching). */
  static of(nc: NatsConnection): StreamDemux {
    let demux = demuxes.get(nc);
    if (!demux) {
      demux = new StreamDemux(nc);
      demuxes.set(nc, demux);
    }
    return demux;
  }

  bind(target: MuxTarget): MuxBinding {
    this.sub ??= this.subscribe();
    const stream = this.nextStream++;
    this.streams.set(stream, target);
    const route = `${this.muxSubject} ${stream}`;
    return {
      inbox: `${this.prefix}.${stream}`,
      // Made when asked for: a plain request (MeshClient.request) waits here too and sends no mux header.
      get headers() {
        const h = headers();
        h.set(STREAM_MUX_HEADER, route);
        return h;
      },
      close: () => void this.streams.delete(stream),
    };
  }

  /** Subscribed on first use; nats.js resubscribes it after a reconnect like any other subscription. */
  private subscribe(): Subscription {
    const sub = this.nc.subscribe(`${this.prefix}.*`, { callback: (err, msg) => (err ? this.failAll(err) : this.route(msg)) });
    void sub.closed.then(
      () => this.closeAll(sub),
      () => this.closeAll(sub),
    );
    return sub;
  }

  private route(msg: Msg): void {
    if (msg.subject === this.muxSubject) return this.dispatch(msg);
    this.streams.get(Number(msg.subject.slice(this.prefix.length + 1)))?.push(msg);
  }

  private dispatch(msg: Msg): void {
    let entries;
    try {
      entries = streamMuxMessageSchema.parse(codec.decode(msg.data));
    } catch {
      // It held entries of unknown streams: every stream may have lost a reply, and a stream never skips one.
      return this.failAll(new Error('a stream mux message is not a list of [stream, response] entries'));
    }
    for (const [stream, response] of entries) this.streams.get(stream)?.pushMuxed(response);
  }

  private failAll(err: Error): void {
    const failure = new MeshError('internal', `stream mux on ${this.muxSubject}: ${err.message}`);
    for (const target of this.streams.values()) target.fail(failure);
    this.streams.clear();
  }

  private closeAll(sub: Subscription): void {
    if (this.sub === sub) this.sub = null;
    for (const target of this.streams.values()) target.closed();
    this.streams.clear();
  }
}
