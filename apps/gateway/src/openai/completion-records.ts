/**
 * Publishes each completion record on JetStream (stream COMPLETIONS, subject
 * `flywheel.completions.<id>`, Nats-Msg-Id = id so a retried publish is stored once) and waits for the
 * ack: the API answers only once the record is durable, and answers 503 at once while NATS is down
 * (publishToStream). Sets the streams up at boot (idempotent).
 */
import { Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { JSONCodec } from 'nats';
import { completionRecordSchema, completionRecordSubject, type CompletionRecord } from '@flywheel/contracts';
import { ensureJetStream, MeshConnection, MeshError, publishToStream } from '@flywheel/mesh';

const codec = JSONCodec<CompletionRecord>();
const PUBLISH_TIMEOUT_MS = 5_000;

@Injectable()
export class CompletionRecords implements OnApplicationBootstrap {
  private readonly logger = new Logger('CompletionRecords');
  private setup: Promise<void> | null = null;

  constructor(private readonly mesh: MeshConnection) {}

  onApplicationBootstrap(): void {
    // Not awaited: boot must not wait on NATS; the first publish waits for this instead.
    void this.ensureSetup().catch(() => undefined);
  }

  async publish(record: CompletionRecord): Promise<void> {
    const parsed = completionRecordSchema.parse(record);
    await this.ensureSetup();
    const nc = this.mesh.connection;
    if (!nc || nc.isClosed()) throw new MeshError('unavailable', 'not connected to NATS');
    try {
      await publishToStream(nc, completionRecordSubject(parsed.id), codec.encode(parsed), {
        msgID: parsed.id,
        timeout: PUBLISH_TIMEOUT_MS,
      });
    } catch (err) {
      throw new MeshError('unavailable', `completion record ${parsed.id} was not stored: ${(err as Error).message}`);
    }
  }

  private ensureSetup(): Promise<void> {
    this.setup ??= this.mesh.connected
      .then((nc) => ensureJetStream(nc))
      .then((result) => {
        if (result.created.length > 0) this.logger.log(`JetStream created ${result.created.join(', ')}`);
      })
      .catch((err: unknown) => {
        this.setup = null;
        this.logger.warn(`JetStream setup failed (retried on the next publish): ${String(err)}`);
        throw new MeshError('unavailable', `JetStream setup failed: ${String(err)}`);
      });
    return this.setup;
  }
}
