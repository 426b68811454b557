/**
 * What every service has: its parsed config, readiness, metrics registry, the NATS connection, the stream mux, the
 * ping handler on `mesh.ping.<service>` and the health HTTP routes (/livez, /readyz, /metrics).
 * Feature modules import nothing from here but the tokens and classes it provides.
 */
import { Controller, Get, Inject, Module, Res, type DynamicModule, type OnApplicationShutdown } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { FLYWHEEL_VERSION, pingRequestSchema, SUBJECTS, type PingReply } from '@flywheel/contracts';
import type { CommonConfig } from '@flywheel/config';
import { MeshConnection } from './mesh.connection';
import { MeshHandlers } from './nest-transport';
import { Readiness } from './readiness';
import { createServiceMetrics, type ServiceMetrics } from './service.metrics';
import { StreamMux } from './stream-mux.publisher';

export const SERVICE_CONFIG = Symbol('SERVICE_CONFIG');
export const SERVICE_METRICS = Symbol('SERVICE_METRICS');

interface ReplyLike {
  status(code: number): ReplyLike;
  header(name: string, value: string): ReplyLike;
  send(body: unknown): unknown;
}

@Controller()
class HealthHttpController {
  constructor(
    private readonly readiness: Readiness,
    @Inject(SERVICE_METRICS) private readonly metrics: ServiceMetrics,
    @Inject(SERVICE_CONFIG) private readonly config: CommonConfig,
  ) {}

  @Get('livez')
  livez() {
    return { status: 'ok', service: this.config.service, instanceId: this.config.instanceId };
  }

  @Get('readyz')
  readyz(@Res() reply: ReplyLike) {
    const body = { ready: this.readiness.ready, conditions: this.readiness.snapshot() };
    return reply.status(body.ready ? 200 : 503).send(body);
  }

  @Get('metrics')
  async metricsText(@Res() reply: ReplyLike) {
    const text = await this.metrics.registry.metrics();
    return reply.header('content-type', this.metrics.registry.contentType).send(text);
  }
}

const startedAt = Date.now();

function pingControllerFor(config: CommonConfig) {
  @Controller()
  @MeshHandlers()
  class PingController {
    constructor(private readonly readiness: Readiness) {}

    @MessagePattern(SUBJECTS.ping(config.service))
    ping(@Payload() data: unknown): PingReply {
      pingRequestSchema.parse(data);
      return {
        service: config.service,
        instanceId: config.instanceId,
        version: FLYWHEEL_VERSION,
        uptimeS: (Date.now() - startedAt) / 1000,
        ready: this.readiness.ready,
      };
    }
  }
  return PingController;
}

class MeshShutdown implements OnApplicationShutdown {
  constructor(private readonly mesh: MeshConnection) {}
  async onApplicationShutdown() {
    await this.mesh.close();
  }
}

@Module({})
export class MeshCoreModule {
  /** `coalesceWrites`: the service's NATS connection writes once per event-loop turn (the gateway's many requests). */
  static forService(config: CommonConfig, options: { coalesceWrites?: boolean } = {}): DynamicModule {
    const readiness = new Readiness();
    const metrics = createServiceMetrics(config.service, config.instanceId, FLYWHEEL_VERSION);
    const mesh = new MeshConnection(config.nats.servers, config.instanceId, readiness, metrics, options);
    return {
      module: MeshCoreModule,
      global: true,
      controllers: [HealthHttpController, pingControllerFor(config)],
      providers: [
        { provide: SERVICE_CONFIG, useValue: config },
        { provide: SERVICE_METRICS, useValue: metrics },
        { provide: Readiness, useValue: readiness },
        { provide: MeshConnection, useValue: mesh },
        { provide: MeshShutdown, useFactory: () => new MeshShutdown(mesh) },
        StreamMux,
      ],
      exports: [SERVICE_CONFIG, SERVICE_METRICS, Readiness, MeshConnection, StreamMux],
    };
  }
}
