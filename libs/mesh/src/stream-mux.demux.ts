/**
 * The caller's half of stream multiplexing (STREAM_MUX_HEADER in libs/contracts): one subscription per connection
 * on a mux subject of its own, and the streams bound to it by number. A mux message is decoded once and each entry
 * goes to its stream's queue; an entry for a stream that has ended (aborted, timed out) is dropped. Not the queue a
 * stream reads (mesh.client.ts) nor the answerer's half (stream-mux.publisher.ts).
 */
import { createInbox, headers, JSONCodec, type Msg, type MsgHdrs, type NatsConnection, type Subscription } from 'nats';
import { STREAM_MUX_HEADER, streamMuxMessageSchema } from '@flywheel/contracts';
import { MeshError } from './mesh.errors';

const codec = JSONCodec<unknown>();

/** Where a mux entry goes: the stream's reply queue. */
export interface MuxTarget {
  pushMuxed(response: unknown): void;
  fail(err: MeshError): void;
}

export interface MuxBinding {
  /** The request's headers: they name the mux subject and this stream's number. */
  readonly headers: MsgHdrs;
  /** Stops delivering to the stream; later entries for it are dropped. */
  close(): void;
}

const demuxes = new WeakMap<NatsConnection, StreamDemux>();

export class StreamDemux {
  private readonly subject = createInbox();
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
    // Subscribed on first use; nats.js resubscribes it after a reconnect like any other subscription.
    this.sub ??= this.nc.subscribe(this.subject, { callback: (err, msg) => (err ? this.failAll(err) : this.dispatch(msg)) });
    const stream = this.nextStream++;
    this.streams.set(stream, target);
    const h = headers();
    h.set(STREAM_MUX_HEADER, `${this.subject} ${stream}`);
    return { headers: h, close: () => void this.streams.delete(stream) };
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
    const failure = new MeshError('internal', `stream mux on ${this.subject}: ${err.message}`);
    for (const target of this.streams.values()) target.fail(failure);
    this.streams.clear();
  }
}
