/**
 * The store writer: one durable pull consumer (`store-writer`) on each of the COMPLETIONS and FEEDBACK
 * streams, writing every record to the store idempotently and acking only after the commit. On a
 * database error the message is nak'd with exponential backoff and the loop pauses, then goes on: a
 * record leaves the consumer only by being stored (or, if unparseable, kept in `dead_letters`).
 * Gateway replicas share each consumer, so every record is written once per fleet, not per replica.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { Logger } from '@nestjs/common';
import { AckPolicy, DeliverPolicy, nanos, type ConsumerMessages, type JsMsg, type NatsConnection } from 'nats';
import { completionRecordSchema, feedbackEventSchema, STREAMS } from '@flywheel/contracts';
import { ensureJetStream } from '@flywheel/mesh';
import { writeCompletion, writeDeadLetter, writeFeedback, type Store, type WriteOutcome } from '@flywheel/store';
import { isDatabaseTextEncodingError } from '../store/store.errors';
import type { FlywheelMetrics } from './flywheel.metrics';

export const STORE_WRITER_DURABLE = 'store-writer';
const ACK_WAIT_MS = 30_000;
const FIRST_RETRY_MS = 200;

export type StreamName = (typeof STREAMS)[keyof typeof STREAMS]['name'];

/** What the writer needs of the world: the open store (throws while there is none). */
export interface WriterStore {
  get(): Store;
}

/** One message's fate: written (ack), or a retry after `delayMs` (nak). */
export type HandleResult = { ack: true; outcome: WriteOutcome | 'dead_letter' } | { ack: false; delayMs: number; error: string };

/** Parses and writes one message's payload; pure of NATS, so it is tested with a real store and no server. */
export async function handleRecord(
  store: WriterStore,
  stream: StreamName,
  message: { data: Uint8Array; subject: string; sequence: number; redeliveryCount: number },
  retryMaxMs: number,
): Promise<HandleResult> {
  const db0 = () => store.get().db;
  const text = new TextDecoder().decode(message.data);
  // A record the database refuses for its content (a NUL character in a prompt or comment: Postgres text
  // and jsonb cannot hold U+0000) fails the same way on every redelivery; nak'ing it would pause this
  // stream's loop at the backoff's pace forever. It goes to dead_letters verbatim instead (found by
  // test/reliability).
  const unlessUnstorable = async (write: () => Promise<WriteOutcome>): Promise<HandleResult> => {
    try {
      return { ack: true, outcome: await write() };
    } catch (err) {
      if (!isDatabaseTextEncodingError(err)) throw err;
      await writeDeadLetter(db0(), { stream, sequence: message.sequence, subject: message.subject, payload: text, error: `unstorable content: ${(err as Error).message}` });
      return { ack: true, outcome: 'dead_letter' };
    }
  };
  try {
    const db = db0();
    let payload: unknown;
    try {
      payload = JSON.parse(text);
    } catch (err) {
      await writeDeadLetter(db, { stream, sequence: message.sequence, subject: message.subject, payload: text, error: `invalid JSON: ${(err as Error).message}` });
      return { ack: true, outcome: 'dead_letter' };
    }
    if (stream === STREAMS.completions.name) {
      const record = completionRecordSchema.safeParse(payload);
      if (!record.success) {
        await writeDeadLetter(db, { stream, sequence: message.sequence, subject: message.subject, payload: text, error: record.error.message });
        return { ack: true, outcome: 'dead_letter' };
      }
      return await unlessUnstorable(() => writeCompletion(db, record.data));
    }
    const event = feedbackEventSchema.safeParse(payload);
    if (!event.success) {
      await writeDeadLetter(db, { stream, sequence: message.sequence, subject: message.subject, payload: text, error: event.error.message });
      return { ack: true, outcome: 'dead_letter' };
    }
    return await unlessUnstorable(() => writeFeedback(db, event.data));
  } catch (err) {
    return { ack: false, delayMs: retryDelayMs(message.redeliveryCount, retryMaxMs), error: err instanceof Error ? err.message : String(err) };
  }
}

/** 200 ms, 400 ms, 800 ms … capped: the n-th delivery of a message that keeps failing. */
export function retryDelayMs(deliveryCount: number, retryMaxMs: number): number {
  return Math.min(retryMaxMs, FIRST_RETRY_MS * 2 ** Math.max(0, Math.min(20, deliveryCount - 1)));
}

export class StoreWriter {
  private readonly logger = new Logger('StoreWriter');
  private readonly running: ConsumerMessages[] = [];
  /** Aborted by stop(): no more records are handled, and a backoff pause (up to retryMaxMs, 30 s) ends at once. */
  private readonly stopping = new AbortController();
  private loops: Promise<void>[] = [];
  private failingSince: number | null = null;

  constructor(
    private readonly store: WriterStore,
    private readonly metrics: FlywheelMetrics,
    private readonly retryMaxMs: number,
  ) {}

  /** Creates the durable consumers if missing and starts consuming both streams. */
  async start(nc: NatsConnection): Promise<void> {
    await ensureJetStream(nc);
    const jsm = await nc.jetstreamManager();
    for (const stream of [STREAMS.completions.name, STREAMS.feedback.name] as const) {
      try {
        await jsm.consumers.info(stream, STORE_WRITER_DURABLE);
      } catch {
        await jsm.consumers.add(stream, {
          durable_name: STORE_WRITER_DURABLE,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          ack_wait: nanos(ACK_WAIT_MS),
          // Never give up on a record: -1 = unlimited deliveries.
          max_deliver: -1,
          max_ack_pending: 1_000,
        });
      }
      if (this.stopping.signal.aborted) return;
      const consumer = await nc.jetstream().consumers.get(stream, STORE_WRITER_DURABLE);
      const messages = await consumer.consume({ max_messages: 64 });
      this.running.push(messages);
      this.loops.push(this.loop(stream, messages));
    }
    this.logger.log(`consuming ${STREAMS.completions.name} and ${STREAMS.feedback.name} as durable "${STORE_WRITER_DURABLE}"`);
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    for (const messages of this.running) messages.stop();
    await Promise.allSettled(this.loops);
  }

  private async loop(stream: StreamName, messages: ConsumerMessages): Promise<void> {
    for await (const msg of messages) {
      if (this.stopping.signal.aborted) {
        msg.nak();
        continue;
      }
      await this.handle(stream, msg);
    }
  }

  private async handle(stream: StreamName, msg: JsMsg): Promise<void> {
    const result = await handleRecord(
      this.store,
      stream,
      { data: msg.data, subject: msg.subject, sequence: msg.info.streamSequence, redeliveryCount: msg.info.redeliveryCount },
      this.retryMaxMs,
    );
    if (result.ack) {
      this.metrics.storeWrites.inc({ stream, outcome: result.outcome });
      if (this.failingSince !== null) {
        this.logger.log(`store writes resumed after ${Math.round((Date.now() - this.failingSince) / 1000)} s of failures`);
        this.failingSince = null;
      }
      // Acked only now, after the commit; if this ack is lost the redelivery is a no-op write.
      await msg.ackAck().catch(() => undefined);
      return;
    }
    this.metrics.storeWrites.inc({ stream, outcome: 'error' });
    if (this.failingSince === null) {
      this.failingSince = Date.now();
      this.logger.warn(`store write failed, retrying with backoff (records stay in JetStream): ${result.error}`);
    }
    msg.nak(result.delayMs);
    // Pause this stream's loop too, so an outage is probed at the backoff's pace, not at line rate.
    // stop() ends the pause: waiting it out outlasted the launcher's 10 s grace, and the gateway was killed.
    await sleep(result.delayMs, undefined, { signal: this.stopping.signal }).catch(() => undefined);
  }
}
