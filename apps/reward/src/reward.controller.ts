/**
 * The reward service's NATS handlers: reward.score (pairs → scores: the reward model's, or with a reward spec its
 * weighted sum with the reward functions') and reward.info. Parse, call, return.
 */
import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { rewardInfoRequestSchema, rewardScoreRequestSchema, SUBJECTS, type RewardInfo, type RewardScoreResponse } from '@flywheel/contracts';
import { MeshHandlers } from '@flywheel/mesh';
import { RewardFunctionsService } from './reward-functions.service';
import { RewardModelService } from './reward-model.service';

@Controller()
@MeshHandlers()
export class RewardController {
  constructor(
    private readonly model: RewardModelService,
    private readonly functions: RewardFunctionsService,
  ) {}

  @MessagePattern(SUBJECTS.reward.score)
  score(@Payload() data: unknown): Promise<RewardScoreResponse> {
    const req = rewardScoreRequestSchema.parse(data);
    const { rewards } = req;
    return rewards ? this.functions.score({ ...req, rewards }, (r) => this.model.score(r)) : this.model.score(req);
  }

  @MessagePattern(SUBJECTS.reward.info)
  info(@Payload() data: unknown): RewardInfo {
    rewardInfoRequestSchema.parse(data);
    return this.model.info();
  }
}
