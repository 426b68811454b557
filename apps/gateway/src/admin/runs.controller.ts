/**
 * /admin/api/runs (training runs from the store) and /admin/api/loop (the trainer's RL loop over NATS):
 * thin routes behind AdminSessionGuard (CSRF on the POST), each one service call.
 */
import { Body, Controller, Get, HttpCode, Param, Post, Query, UseGuards } from '@nestjs/common';
import type { AdminRunList, LoopStatus, TrainingRunDetail } from '@flywheel/contracts';
import { AdminSessionGuard } from './admin-session.guard';
import { AdminLoopService } from './loop.service';
import { AdminRunsService } from './runs.service';

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

@Controller('admin/api/loop')
@UseGuards(AdminSessionGuard)
export class AdminLoopController {
  constructor(private readonly loop: AdminLoopService) {}

  @Get()
  status(): Promise<LoopStatus> {
    return this.loop.status();
  }

  @Post()
  @HttpCode(200)
  act(@Body() body: unknown): Promise<LoopStatus> {
    return this.loop.act(body);
  }
}
