/**
 * Opens the NATS connection a service uses for requests, JetStream and the object store: reconnects
 * forever (a NATS restart must not need a service restart) and drains on shutdown. Not the Nest
 * transport's own connection, which @nestjs/microservices opens with the options from natsTransportOptions.
 */
import { connect, type NatsConnection } from 'nats';

export interface MeshConnectionOptions {
  servers: string[];
  /** Shows up in `nats server report connections`; service + instance is the useful choice. */
  name: string;
}

/** Shared between our connection and the Nest transport's, so both behave the same on outages. */
export function reconnectOptions() {
  return {
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
    pingInterval: 10_000,
    // nats.js otherwise captures a stack (`new Error()`) for every request and JetStream publish to append to a
    // failure: three error objects per request on the gateway's hot path, about a tenth of its per-request CPU.
    // Our errors say what failed (MeshError names the subject).
    noAsyncTraces: true,
  } as const;
}

/**
 * A budget (ms) for resending requests that reached no service (MeshClient's `retryUndeliveredMs`), for
 * calls safe to repeat. After a NATS restart every process reconnects reconnectTimeWait + jitter (≤ 350 ms)
 * apart, so a responder may resubscribe that much after its caller is back; this covers about three such gaps.
 */
export const RECONNECT_RETRY_MS = 1_000;

export async function connectMesh(opts: MeshConnectionOptions): Promise<NatsConnection> {
  return connect({ servers: opts.servers, name: opts.name, ...reconnectOptions() });
}

/** Drain finishes in-flight subscriptions and flushes publishes; close() alone would drop them. */
export async function drainQuietly(nc: NatsConnection | null | undefined): Promise<void> {
  if (!nc || nc.isClosed()) return;
  try {
    await nc.drain();
  } catch {
    await nc.close().catch(() => undefined);
  }
}
