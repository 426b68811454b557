/**
 * The service's own NATS connection as an injectable: connecting starts at construction and never
 * blocks boot (the HTTP health port must answer while NATS is still down); readiness follows the
 * connection's status. Callers get a MeshClient, or a MeshError('unavailable') while disconnected.
 */
import type { NatsConnection } from 'nats';
import { MeshClient } from './mesh.client';
import { MeshError } from './mesh.errors';
import { connectMesh, drainQuietly } from './nats.connection';
import { coalesceWrites } from './nats.write-coalescing';
import type { Readiness } from './readiness';
import type { ServiceMetrics } from './service.metrics';

export class MeshConnection {
  private nc: NatsConnection | null = null;
  private meshClient: MeshClient | null = null;
  private closed = false;
  readonly connected: Promise<NatsConnection>;

  constructor(
    servers: string[],
    name: string,
    private readonly readiness: Readiness,
    private readonly metrics: ServiceMetrics,
    /** Writes once per event-loop turn (nats.write-coalescing.ts): for a process serving many requests at once. */
    options: { coalesceWrites?: boolean } = {},
  ) {
    readiness.require('nats');
    this.connected = connectMesh({ servers, name }).then((nc) => {
      if (options.coalesceWrites) coalesceWrites(nc);
      this.nc = nc;
      this.meshClient = new MeshClient(nc);
      this.setUp(true);
      void this.watch(nc);
      return nc;
    });
    // A failed first connect would otherwise be an unhandled rejection; boot code awaits `connected` itself.
    this.connected.catch(() => undefined);
  }

  get client(): MeshClient {
    if (!this.meshClient || !this.nc || this.nc.isClosed()) throw new MeshError('unavailable', 'not connected to NATS');
    return this.meshClient;
  }

  get connection(): NatsConnection | null {
    return this.nc;
  }

  async close(): Promise<void> {
    this.closed = true;
    await drainQuietly(this.nc);
  }

  private setUp(up: boolean) {
    this.readiness.set('nats', up);
    this.metrics.natsConnected.set(up ? 1 : 0);
  }

  private async watch(nc: NatsConnection) {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') this.setUp(false);
      if (s.type === 'reconnect') this.setUp(true);
    }
    if (!this.closed) this.setUp(false);
  }
}
