/**
 * The trainer's module tree: mesh core, its BullMQ queues and the job workers (sft, reward-train, dpo, kto, ppo, grpo,
 * eval, moderation-train, and the loop that chains them), the loop's control over NATS, plus the store the jobs read exports from and
 * register runs and model versions in.
 */
import { Module, type DynamicModule } from '@nestjs/common';
import type { TrainerConfig } from '@flywheel/config';
import { MeshCoreModule } from '@flywheel/mesh';
import { DpoProcessor } from './dpo.processor';
import { EvalProcessor } from './eval.processor';
import { LoopControlController } from './loop-control.controller';
import { LoopProcessor } from './loop.processor';
import { LoopControlService } from './loop-control.service';
import { ModerationControlController } from './moderation-control.controller';
import { GrpoProcessor } from './grpo.processor';
import { KtoProcessor } from './kto.processor';
import { ModerationTrainProcessor } from './moderation-train.processor';
import { PpoProcessor } from './ppo.processor';
import { RewardTrainProcessor } from './reward-train.processor';
import { SftProcessor } from './sft.processor';
import { TrainerInfoController } from './trainer-info.controller';
import { TrainerMetrics } from './trainer.metrics';
import { TRAINER_CONFIG, TrainerQueues } from './trainer.queues';
import { TrainerStore } from './trainer.store';

@Module({})
export class TrainerModule {
  static forRoot(config: TrainerConfig): DynamicModule {
    return {
      module: TrainerModule,
      imports: [MeshCoreModule.forService(config)],
      controllers: [TrainerInfoController, LoopControlController, ModerationControlController],
      providers: [
        { provide: TRAINER_CONFIG, useValue: config }, TrainerQueues, TrainerStore, SftProcessor, RewardTrainProcessor, DpoProcessor,
        TrainerMetrics, PpoProcessor, EvalProcessor, LoopProcessor, LoopControlService, ModerationTrainProcessor, GrpoProcessor, KtoProcessor,
      ],
    };
  }
}
