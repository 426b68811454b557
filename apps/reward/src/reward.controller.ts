/** The reward service's NATS handlers: reward.score (pairs → scores) and reward.info. Parse, call, return. */
import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { rewardInfoRequestSchema, rewardScoreRequestSchema, SUBJECTS, type RewardInfo, type RewardScoreResponse } from '@flywheel/contracts';
import { MeshHandlers } from '@flywheel/mesh';
import { RewardModelService } from './reward-model.service';

@Controller()
@MeshHandlers()
export class RewardController {
  constructor(private readonly model: RewardModelService) {}

  @MessagePattern(SUBJECTS.reward.score)
  score(@Payload() data: unknown): Promise<RewardScoreResponse> {
    return this.model.score(rewardScoreRequestSchema.parse(data));
  }

  @MessagePattern(SUBJECTS.reward.info)
  info(@Payload() data: unknown): RewardInfo {
    rewardInfoRequestSchema.parse(data);
    return this.model.info();
  }
}
