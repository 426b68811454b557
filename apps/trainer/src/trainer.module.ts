/**
 * The trainer's module tree: mesh core, its BullMQ queues and the job workers (sft today; reward-train, ppo and
 * eval arrive with their issues), plus the store the jobs read exports from and register model versions in.
 */
import { Module, type DynamicModule } from '@nestjs/common';
import type { TrainerConfig } from '@flywheel/config';
import { MeshCoreModule } from '@flywheel/mesh';
import { RewardTrainProcessor } from './reward-train.processor';
import { SftProcessor } from './sft.processor';
import { TrainerInfoController } from './trainer-info.controller';
import { TRAINER_CONFIG, TrainerQueues } from './trainer.queues';
import { TrainerStore } from './trainer.store';

@Module({})
export class TrainerModule {
  static forRoot(config: TrainerConfig): DynamicModule {
    return {
      module: TrainerModule,
      imports: [MeshCoreModule.forService(config)],
      controllers: [TrainerInfoController],
      providers: [{ provide: TRAINER_CONFIG, useValue: config }, TrainerQueues, TrainerStore, SftProcessor, RewardTrainProcessor],
    };
  }
}
