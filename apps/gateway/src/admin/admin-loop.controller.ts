/**
 * /admin/api/loop: the trainer's RL loop as the admin UI sees it (GET status; POST pause, resume or start, with
 * CSRF). Thin: each route calls AdminLoopService once, which asks the trainer over NATS; behind AdminSessionGuard.
 */
import { Body, Controller, Get, HttpCode, Post, UseGuards } from '@nestjs/common';
import type { LoopStatus } from '@flywheel/contracts';
import { AdminLoopService } from './admin-loop.service';
import { AdminSessionGuard } from './admin-session.guard';

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
