/**
 * The gateway's module tree: mesh core (health, metrics, NATS), /healthz, the OpenAI API, the data flywheel and
 * the admin API (each importing AuthModule and StoreModule for the one key store and store handle they share),
 * and the one exception filter every route's errors leave through.
 */
import { Module, type DynamicModule } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import type { GatewayConfig } from '@flywheel/config';
import { MeshCoreModule } from '@flywheel/mesh';
import type { Moderator } from '@flywheel/moderation';
import { HealthzController } from './health/healthz.controller';
import { HealthzService } from './health/healthz.service';
import { AdminModule } from './admin/admin.module';
import { FlywheelModule } from './flywheel/flywheel.module';
import { OpenAiExceptionFilter } from './http/openai-exception.filter';
import { OpenAiModule } from './openai/openai.module';

@Module({})
export class GatewayModule {
  /** `moderator`: the in-process moderator, loaded once at boot (main.ts). */
  static forRoot(config: GatewayConfig, moderator: Moderator): DynamicModule {
    return {
      module: GatewayModule,
      imports: [MeshCoreModule.forService(config, { coalesceWrites: true }), OpenAiModule.forRoot(config, moderator), FlywheelModule.forRoot(config), AdminModule.forRoot(config)],
      controllers: [HealthzController],
      providers: [HealthzService, { provide: APP_FILTER, useClass: OpenAiExceptionFilter }],
    };
  }
}
