/**
 * The moderation service's module tree: mesh core (health, readiness, metrics, ping) plus
 * moderation.check / moderation.info over NATS, served by one Moderator loaded at boot.
 */
import { Module, type DynamicModule } from '@nestjs/common';
import type { CommonConfig } from '@flywheel/config';
import { MeshCoreModule, SERVICE_METRICS, type ServiceMetrics } from '@flywheel/mesh';
import { Moderator } from '@flywheel/moderation';
import { ModerationController } from './moderation.controller';
import { ModerationMetrics } from './moderation.metrics';
import { ModerationService } from './moderation.service';

@Module({})
export class ModerationModule {
  static forRoot(config: CommonConfig, moderator: Moderator): DynamicModule {
    return {
      module: ModerationModule,
      imports: [MeshCoreModule.forService(config)],
      controllers: [ModerationController],
      providers: [
        { provide: Moderator, useValue: moderator },
        { provide: ModerationMetrics, useFactory: (m: ServiceMetrics) => new ModerationMetrics(m.registry), inject: [SERVICE_METRICS] },
        { provide: ModerationService, useFactory: (mod: Moderator, metrics: ModerationMetrics) => new ModerationService(mod, metrics), inject: [Moderator, ModerationMetrics] },
      ],
    };
  }
}
