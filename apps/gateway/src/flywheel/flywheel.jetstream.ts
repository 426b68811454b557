/**
 * The feedback API's JetStream I/O: publish a feedback event and wait for JetStream's ack (Nats-Msg-Id
 * = feedback id, so a retried publish is stored once), and read back a stored completion record or
 * feedback event by its subject; each refused at once (MeshError 'unavailable') while NATS is down. Sets the
 * streams up once (idempotent). No HTTP and no store here.
 */
import { Injectable, Logger } from '@nestjs/common';
import { JSONCodec, type NatsConnection } from 'nats';
import {
  completionRecordSchema,
  completionRecordSubject,
  feedbackEventSchema,
  feedbackSubject,
  STREAMS,
  type CompletionRecord,
  type FeedbackEvent,
} from '@flywheel/contracts';
import { assertNatsConnected, ensureJetStream, MeshConnection, MeshError, publishToStream } from '@flywheel/mesh';

const codec = JSONCodec<FeedbackEvent>();
const PUBLISH_TIMEOUT_MS = 5_000;

@Injectable()
export class FlywheelJetStream {
  private readonly logger = new Logger('FlywheelJetStream');
  private setup: Promise<NatsConnection> | null = null;

  constructor(private readonly mesh: MeshConnection) {}

  /** Resolves once JetStream holds the event; `duplicate` when it already held one with this id. */
  async publishFeedback(event: FeedbackEvent): Promise<{ duplicate: boolean }> {
    const nc = await this.ready();
    try {
      const ack = await publishToStream(nc, feedbackSubject(event.id), codec.encode(feedbackEventSchema.parse(event)), {
        msgID: event.id,
        timeout: PUBLISH_TIMEOUT_MS,
      });
      return { duplicate: ack.duplicate };
    } catch (err) {
      throw new MeshError('unavailable', `feedback ${event.id} was not stored: ${(err as Error).message}`);
    }
  }

  findCompletionRecord(id: string): Promise<CompletionRecord | null> {
    return this.lastOn(STREAMS.completions.name, completionRecordSubject(id), (data) => completionRecordSchema.parse(data));
  }

  findFeedbackEvent(id: string): Promise<FeedbackEvent | null> {
    return this.lastOn(STREAMS.feedback.name, feedbackSubject(id), (data) => feedbackEventSchema.parse(data));
  }

  private async lastOn<T>(stream: string, subject: string, parse: (data: unknown) => T): Promise<T | null> {
    const nc = await this.ready();
    try {
      const jsm = await nc.jetstreamManager();
      const msg = await jsm.streams.getMessage(stream, { last_by_subj: subject });
      return parse(msg.json());
    } catch (err) {
      if (isNoMessage(err)) return null;
      throw new MeshError('unavailable', `JetStream lookup of ${subject} failed: ${(err as Error).message}`);
    }
  }

  private ready(): Promise<NatsConnection> {
    const nc = this.mesh.connection;
    if (!nc || nc.isClosed()) return Promise.reject(new MeshError('unavailable', 'not connected to NATS'));
    try {
      // A lookup sent while NATS reconnects would wait out its timeout: refused at once, like a publish.
      assertNatsConnected(nc, 'the JetStream call');
    } catch (err) {
      return Promise.reject(err);
    }
    this.setup ??= ensureJetStream(nc)
      .then(() => nc)
      .catch((err: unknown) => {
        this.setup = null;
        this.logger.warn(`JetStream setup failed (retried on the next call): ${String(err)}`);
        throw new MeshError('unavailable', `JetStream setup failed: ${String(err)}`);
      });
    return this.setup;
  }
}

/** JetStream's "no message found" (err_code 10037) for a subject with nothing stored. */
function isNoMessage(err: unknown): boolean {
  const e = err as { code?: string; api_error?: { err_code?: number }; message?: string };
  return e?.api_error?.err_code === 10037 || e?.code === '404' || /no message found/i.test(String(e?.message));
}
