/**
 * A JetStream publish that waits for the stream's ack but never on a dead connection: refused at once while
 * NATS is reconnecting (nats.js 2.x would drop the message at its next reconnect attempt and the ack wait
 * would run out its whole timeout), and failed at the drop when the connection goes while the ack is awaited.
 * Both are MeshError('unavailable'); an ack that does arrive means the stream holds the message. Not stream
 * setup (jetstream.setup.ts) nor the callers' dedup policy: they pass their own msgID.
 */
import type { JetStreamPublishOptions, NatsConnection, PubAck } from 'nats';
import { MeshError } from './mesh.errors';
import { NatsLink } from './nats.link';

/** Throws MeshError('unavailable') while `nc` is reconnecting or closed: anything sent now would be lost. */
export function assertNatsConnected(nc: NatsConnection, what: string): void {
  if (nc.isClosed() || !NatsLink.of(nc).connected) throw new MeshError('unavailable', `NATS is reconnecting; ${what} was not sent`);
}

/**
 * Publishes `data` on `subject` and resolves with JetStream's ack. Rejects with MeshError('unavailable') at
 * once while disconnected or as soon as the connection drops before the ack (the message may or may not be
 * stored: a retry with the same msgID is stored once); any other failure (ack timeout, no stream) is nats.js's
 * own error, for the caller to map.
 */
export async function publishToStream(nc: NatsConnection, subject: string, data: Uint8Array, opts: Partial<JetStreamPublishOptions>): Promise<PubAck> {
  assertNatsConnected(nc, `the publish on ${subject}`);
  let stopListening: () => void = () => undefined;
  const dropped = new Promise<never>((_, reject) => {
    stopListening = NatsLink.of(nc).onDrop(() => reject(new MeshError('unavailable', `the connection to NATS dropped before ${subject} was acknowledged`)));
  });
  const acked = nc.jetstream().publish(subject, data, opts);
  try {
    return await Promise.race([acked, dropped]);
  } finally {
    stopListening();
    acked.catch(() => undefined); // lost the race to a drop: its own timeout rejects it later
  }
}
