/** moderation.check and moderation.info over NATS: parse the payload, call the service, reply. */
import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import {
  moderationInfoRequestSchema,
  moderationRequestSchema,
  SUBJECTS,
  type ModerationInfo,
  type ModerationResponse,
} from '@flywheel/contracts';
import { MeshHandlers } from '@flywheel/mesh';
import { ModerationService } from './moderation.service';

@Controller()
@MeshHandlers()
export class ModerationController {
  constructor(private readonly moderation: ModerationService) {}

  @MessagePattern(SUBJECTS.moderation.check)
  check(@Payload() data: unknown): ModerationResponse {
    return this.moderation.check(moderationRequestSchema.parse(data));
  }

  @MessagePattern(SUBJECTS.moderation.info)
  info(@Payload() data: unknown): ModerationInfo {
    moderationInfoRequestSchema.parse(data);
    return this.moderation.info();
  }
}
