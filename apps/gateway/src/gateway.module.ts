/** The gateway's module tree: mesh core (health, metrics, NATS) plus the HTTP features. */
import { Module, type DynamicModule } from '@nestjs/common';
import type { GatewayConfig } from '@flywheel/config';
import { MeshCoreModule } from '@flywheel/mesh';
import { HealthzController } from './health/healthz.controller';
import { HealthzService } from './health/healthz.service';

@Module({})
export class GatewayModule {
  static forRoot(config: GatewayConfig): DynamicModule {
    return {
      module: GatewayModule,
      imports: [MeshCoreModule.forService(config)],
      controllers: [HealthzController],
      providers: [HealthzService],
    };
  }
}
