/**
 * /admin/api/runs: a page of top-level training runs and one run in detail, read from the store. Thin: each route
 * calls AdminRunsService once; behind AdminSessionGuard.
 */
import { Controller, Get, Param, Query, UseGuards } from '@nestjs/common';
import type { AdminRunList, TrainingRunDetail } from '@flywheel/contracts';
import { AdminRunsService } from './admin-runs.service';
import { AdminSessionGuard } from './admin-session.guard';

@Controller('admin/api/runs')
@UseGuards(AdminSessionGuard)
export class AdminRunsController {
  constructor(private readonly runs: AdminRunsService) {}

  @Get()
  list(@Query() query: unknown): Promise<AdminRunList> {
    return this.runs.list(query);
  }

  @Get(':id')
  detail(@Param('id') id: string): Promise<TrainingRunDetail> {
    return this.runs.detail(id);
  }
}
