/** POST /v1/moderations: OpenAI's moderation endpoint, API key checked by the guard, answered by the moderation service. */
import { Body, Controller, HttpCode, Post, UseGuards } from '@nestjs/common';
import type { ModerationResponse } from '@flywheel/contracts';
import { ApiKeyGuard } from '../auth/api-key.guard';
import { GatewayModeration } from './gateway-moderation.service';

@Controller('v1')
@UseGuards(ApiKeyGuard)
export class ModerationsController {
  constructor(private readonly moderation: GatewayModeration) {}

  @Post('moderations')
  @HttpCode(200)
  create(@Body() body: unknown): Promise<ModerationResponse> {
    return this.moderation.moderations(body);
  }
}
