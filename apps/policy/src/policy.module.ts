/**
 * The policy service's module tree: mesh core plus the engine (a real checkpoint on the native kernels)
 * (hot-swapped when the `models` KV names a new policy version) and its NATS handlers: policy.generate
 * (streamed), policy.info, policy.cancel.
 */
import { Module, type DynamicModule } from '@nestjs/common';
import type { PolicyConfig } from '@flywheel/config';
import { activeModelSourceProvider, MeshCoreModule } from '@flywheel/mesh';
import { PolicyEngineService } from './engine/policy-engine.service';
import { cancelControllerFor, PolicyController } from './policy.controller';

@Module({})
export class PolicyModule {
  static forRoot(config: PolicyConfig): DynamicModule {
    return {
      module: PolicyModule,
      imports: [MeshCoreModule.forService(config)],
      controllers: [PolicyController, cancelControllerFor(config.instanceId)],
      providers: [activeModelSourceProvider('policy'), PolicyEngineService],
    };
  }
}
