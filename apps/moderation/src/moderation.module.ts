/**
 * The moderation service's module tree. Until its feature lands it answers only what is real: liveness,
 * readiness and metrics over HTTP, and its ping on mesh.ping.moderation over NATS.
 */
import { Module, type DynamicModule } from '@nestjs/common';
import type { CommonConfig } from '@flywheel/config';
import { MeshCoreModule } from '@flywheel/mesh';

@Module({})
export class ModerationModule {
  static forRoot(config: CommonConfig): DynamicModule {
    return { module: ModerationModule, imports: [MeshCoreModule.forService(config)] };
  }
}
