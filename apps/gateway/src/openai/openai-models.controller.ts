/** GET /v1/models and GET /v1/models/{id}: what the policy service serves right now. */
import { Controller, Get, Param, UseGuards } from '@nestjs/common';
import type { OpenAiModel, OpenAiModelList } from '@flywheel/contracts';
import { ApiKeyGuard } from '../auth/api-key.guard';
import { OpenAiModelsService } from './openai-models.service';

@Controller('v1/models')
@UseGuards(ApiKeyGuard)
export class OpenAiModelsController {
  constructor(private readonly models: OpenAiModelsService) {}

  @Get()
  list(): Promise<OpenAiModelList> {
    return this.models.list();
  }

  @Get(':id')
  retrieve(@Param('id') id: string): Promise<OpenAiModel> {
    return this.models.retrieve(id);
  }
}
