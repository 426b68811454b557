/**
 * /admin/api/models: list (GET), promote and roll back (POST, CSRF like every admin write). Thin: parse
 * nothing, call AdminModelsService once.
 */
import { Body, Controller, Get, HttpCode, Post, Query, Req, UseGuards } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import type { ActiveModelEntry, ModelVersionList } from '@flywheel/contracts';
import { AdminSessionGuard, adminSessionOf } from './admin-session.guard';
import { AdminModelsService } from './admin-models.service';

@Controller('admin/api/models')
@UseGuards(AdminSessionGuard)
export class AdminModelsController {
  constructor(private readonly models: AdminModelsService) {}

  @Get()
  list(@Query() query: unknown): Promise<ModelVersionList> {
    return this.models.list(query);
  }

  @Post('promote')
  @HttpCode(200)
  promote(@Body() body: unknown, @Req() req: { raw: IncomingMessage }): Promise<ActiveModelEntry> {
    return this.models.promote(body, adminSessionOf(req.raw).keyId);
  }

  @Post('rollback')
  @HttpCode(200)
  rollback(@Body() body: unknown, @Req() req: { raw: IncomingMessage }): Promise<ActiveModelEntry> {
    return this.models.rollback(body, adminSessionOf(req.raw).keyId);
  }
}
