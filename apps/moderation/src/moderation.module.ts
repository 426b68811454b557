/**
 * The moderation service's module tree: mesh core (health, readiness, metrics, ping) plus
 * moderation.check / moderation.info over NATS, served by the ServedModerator: the configured files at boot, then
 * whichever moderation version the `models` KV names (hot-swapped).
 */
import { Module, type DynamicModule } from '@nestjs/common';
import type { CommonConfig, ModerationConfig } from '@flywheel/config';
import { MeshCoreModule, SERVICE_METRICS, type ServiceMetrics } from '@flywheel/mesh';
import { ServedModerator, servedModeratorProviders, type Moderator } from '@flywheel/moderation';
import { ModerationController } from './moderation.controller';
import { ModerationMetrics } from './moderation.metrics';
import { ModerationService } from './moderation.service';

type ModerationServiceConfig = CommonConfig & { moderation: ModerationConfig };

@Module({})
export class ModerationModule {
  /** `moderator`: what the configured files load, served until a moderation version is promoted. */
  static forRoot(config: ModerationServiceConfig, moderator: Moderator): DynamicModule {
    return {
      module: ModerationModule,
      imports: [MeshCoreModule.forService(config)],
      controllers: [ModerationController],
      providers: [
        ...servedModeratorProviders(moderator, { lexiconPath: config.moderation.lexiconPath, policyPath: config.moderation.policyPath }),
        { provide: ModerationMetrics, useFactory: (m: ServiceMetrics) => new ModerationMetrics(m.registry), inject: [SERVICE_METRICS] },
        { provide: ModerationService, useFactory: (mod: ServedModerator, metrics: ModerationMetrics) => new ModerationService(mod, metrics), inject: [ServedModerator, ModerationMetrics] },
      ],
    };
  }
}
