/** GET /v1/models and GET /v1/models/{id}: what the policy service serves right now. */
import { Controller, Get, Param, UseGuards } from '@nestjs/common';
import type { OpenAiModel, OpenAiModelList } from '@flywheel/contracts';
import { ApiKeyGuard } from '../auth/api-key.guard';
import { ModelsService } from './models.service';

@Controller('v1/models')
@UseGuards(ApiKeyGuard)
export class ModelsController {
  constructor(private readonly models: ModelsService) {}

  @Get()
  list(): Promise<OpenAiModelList> {
    return this.models.list();
  }

  @Get(':id')
  retrieve(@Param('id') id: string): Promise<OpenAiModel> {
    return this.models.retrieve(id);
  }
}
