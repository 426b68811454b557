/** trainer.info over NATS: which queues exist and how many jobs each holds (real counts from Redis). */
import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { SUBJECTS, trainerInfoRequestSchema, type TrainerInfo } from '@flywheel/contracts';
import { MeshHandlers } from '@flywheel/mesh';
import { TrainerQueues } from './trainer.queues';

@Controller()
@MeshHandlers()
export class TrainerInfoController {
  constructor(private readonly queues: TrainerQueues) {}

  @MessagePattern(SUBJECTS.trainer.info)
  async info(@Payload() data: unknown): Promise<TrainerInfo> {
    trainerInfoRequestSchema.parse(data);
    return { queues: await this.queues.counts() };
  }
}
