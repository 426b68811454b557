/**
 * The reward service's module tree: mesh core plus the reward model (a LlamaForSequenceClassification checkpoint
 * on the native kernels, hot-swapped when the `models` KV names a new reward version, or none), the verifiable
 * reward functions, and the NATS handlers reward.score and reward.info.
 */
import { Module, type DynamicModule } from '@nestjs/common';
import type { RewardConfig } from '@flywheel/config';
import { activeModelSourceProvider, MeshCoreModule } from '@flywheel/mesh';
import { RewardController } from './reward.controller';
import { RewardFunctionsService } from './reward-functions.service';
import { RewardModelService } from './reward-model.service';

@Module({})
export class RewardModule {
  static forRoot(config: RewardConfig): DynamicModule {
    return {
      module: RewardModule,
      imports: [MeshCoreModule.forService(config)],
      controllers: [RewardController],
      providers: [activeModelSourceProvider('reward'), RewardModelService, RewardFunctionsService],
    };
  }
}
