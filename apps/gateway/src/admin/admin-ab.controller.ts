/**
 * /admin/api/ab: the blind A/B queue (GET), its per-candidate summary (GET summary), a verdict on one pair (POST :id)
 * and acting on a decided candidate (POST candidates/:version/decide); writes need the session's CSRF token, as every
 * admin write. Thin: each route calls AdminAbService once.
 */
import { Body, Controller, Get, HttpCode, Param, Post, Query, Req, UseGuards } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import type { AdminAbDecision, AdminAbQueue, AdminAbSummaryList, AdminAbVerdictResult } from '@flywheel/contracts';
import { AdminAbService } from './admin-ab.service';
import { AdminSessionGuard, adminSessionOf } from './admin-session.guard';

@Controller('admin/api/ab')
@UseGuards(AdminSessionGuard)
export class AdminAbController {
  constructor(private readonly ab: AdminAbService) {}

  @Get()
  queue(@Query() query: unknown): Promise<AdminAbQueue> {
    return this.ab.queue(query);
  }

  @Get('summary')
  summary(): Promise<AdminAbSummaryList> {
    return this.ab.summary();
  }

  @Post('candidates/:version/decide')
  @HttpCode(200)
  decide(@Param('version') version: string, @Req() req: { raw: IncomingMessage }): Promise<AdminAbDecision> {
    return this.ab.decide(version, adminSessionOf(req.raw).keyId);
  }

  @Post(':id')
  @HttpCode(200)
  verdict(@Param('id') id: string, @Body() body: unknown, @Req() req: { raw: IncomingMessage }): Promise<AdminAbVerdictResult> {
    return this.ab.verdict(id, body, adminSessionOf(req.raw).keyId);
  }
}
