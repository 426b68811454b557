/**
 * The data flywheel in the gateway: the durable JetStream → store writer, the review-backlog gauges and the
 * feedback API (keys from AuthModule, the store from StoreModule). Imported by GatewayModule with one line:
 * `FlywheelModule.forRoot(config)`. Jobs and consumers are started here and nowhere else.
 */
import { Inject, Logger, Module, type DynamicModule, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import type { GatewayConfig } from '@flywheel/config';
import { MeshConnection, SERVICE_METRICS, type ServiceMetrics } from '@flywheel/mesh';
import { AuthModule } from '../auth/auth.module';
import { StoreHandle } from '../store/store.handle';
import { StoreModule } from '../store/store.module';
import { FeedbackController } from './feedback.controller';
import { FeedbackService } from './feedback.service';
import { FlywheelBacklog, writerConsumerInfoOn } from './flywheel.backlog';
import { FlywheelJetStream } from './flywheel.jetstream';
import { FlywheelMetrics } from './flywheel.metrics';
import { StoreWriter } from './store.writer';

/** Starts the writer once NATS is up (boot never waits on it) and the backlog gauges; stops them at shutdown, before StoreModule closes the store. */
class FlywheelLifecycle implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('Flywheel');
  private stopping = false;

  constructor(
    @Inject(MeshConnection) private readonly mesh: MeshConnection,
    @Inject(StoreWriter) private readonly writer: StoreWriter,
    @Inject(FlywheelBacklog) private readonly backlog: FlywheelBacklog,
  ) {}

  onApplicationBootstrap(): void {
    void this.startWriter();
    this.backlog.start();
  }

  async onApplicationShutdown(): Promise<void> {
    this.stopping = true;
    await this.backlog.stop();
    await this.writer.stop();
  }

  private async startWriter(): Promise<void> {
    for (let delayMs = 500; !this.stopping; delayMs = Math.min(10_000, delayMs * 2)) {
      try {
        await this.writer.start(await this.mesh.connected);
        return;
      } catch (err) {
        this.logger.warn(`store writer not started (retrying): ${err instanceof Error ? err.message : String(err)}`);
        await new Promise((r) => setTimeout(r, delayMs));
      }
    }
  }
}

@Module({})
export class FlywheelModule {
  static forRoot(config: GatewayConfig): DynamicModule {
    const { feedbackInflightWindowMs, writerRetryMaxMs, backlogMetricsMs } = config.gateway.store;
    return {
      module: FlywheelModule,
      imports: [AuthModule, StoreModule],
      controllers: [FeedbackController],
      providers: [
        { provide: FlywheelMetrics, useFactory: (m: ServiceMetrics) => new FlywheelMetrics(m.registry), inject: [SERVICE_METRICS] },
        FlywheelJetStream,
        {
          provide: FeedbackService,
          useFactory: (js: FlywheelJetStream, store: StoreHandle, metrics: FlywheelMetrics) =>
            new FeedbackService(js, store, metrics, { inflightWindowMs: feedbackInflightWindowMs }),
          inject: [FlywheelJetStream, StoreHandle, FlywheelMetrics],
        },
        {
          provide: StoreWriter,
          useFactory: (store: StoreHandle, metrics: FlywheelMetrics) => new StoreWriter(store, metrics, writerRetryMaxMs),
          inject: [StoreHandle, FlywheelMetrics],
        },
        {
          provide: FlywheelBacklog,
          useFactory: (store: StoreHandle, mesh: MeshConnection, metrics: FlywheelMetrics) =>
            new FlywheelBacklog(store, writerConsumerInfoOn(mesh), metrics, backlogMetricsMs),
          inject: [StoreHandle, MeshConnection, FlywheelMetrics],
        },
        FlywheelLifecycle,
      ],
    };
  }
}
