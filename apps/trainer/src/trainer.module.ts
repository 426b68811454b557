/**
 * The trainer's module tree: mesh core plus its BullMQ queues. Job workers (sft, reward-train, ppo,
 * eval) arrive with their issues; until then the trainer answers health, readiness and queue counts.
 */
import { Module, type DynamicModule } from '@nestjs/common';
import type { CommonConfig } from '@flywheel/config';
import { MeshCoreModule } from '@flywheel/mesh';
import { TrainerInfoController } from './trainer-info.controller';
import { TrainerQueues } from './trainer.queues';

@Module({})
export class TrainerModule {
  static forRoot(config: CommonConfig): DynamicModule {
    return {
      module: TrainerModule,
      imports: [MeshCoreModule.forService(config)],
      controllers: [TrainerInfoController],
      providers: [TrainerQueues],
    };
  }
}
