/**
 * Asks every service of the mesh whether it is up by pinging `mesh.ping.<service>` over NATS with a
 * short timeout, all in parallel. A service is down when nothing answers in time or it answers an error.
 */
import { Inject, Injectable } from '@nestjs/common';
import { pingReplySchema, SERVICE_NAMES, SUBJECTS, type HealthReport, type ServiceHealth } from '@flywheel/contracts';
import type { GatewayConfig } from '@flywheel/config';
import { MeshConnection, MeshError, SERVICE_CONFIG } from '@flywheel/mesh';

@Injectable()
export class HealthzService {
  constructor(
    private readonly mesh: MeshConnection,
    @Inject(SERVICE_CONFIG) private readonly config: GatewayConfig,
  ) {}

  async report(): Promise<HealthReport> {
    const entries = await Promise.all(SERVICE_NAMES.map(async (service) => [service, await this.probe(service)] as const));
    const services = Object.fromEntries(entries) as HealthReport['services'];
    const allUp = entries.every(([, h]) => h.status === 'up');
    return { status: allUp ? 'ok' : 'degraded', services };
  }

  private async probe(service: (typeof SERVICE_NAMES)[number]): Promise<ServiceHealth> {
    const started = performance.now();
    try {
      const reply = await this.mesh.client.request(
        SUBJECTS.ping(service),
        { from: this.config.instanceId },
        pingReplySchema,
        { timeoutMs: this.config.gateway.healthTimeoutMs },
      );
      return {
        status: 'up',
        latencyMs: Math.round((performance.now() - started) * 100) / 100,
        instanceId: reply.instanceId,
        version: reply.version,
      };
    } catch (err) {
      return { status: 'down', error: err instanceof MeshError ? `${err.code}: ${err.message}` : String(err) };
    }
  }
}
