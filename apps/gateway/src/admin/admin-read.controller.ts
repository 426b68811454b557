/**
 * The admin API's reads under /admin/api: the inbox, the policy versions seen, one completion in detail, the
 * dashboard's stats. Thin: each route calls AdminReadService once; all behind AdminSessionGuard.
 */
import { Controller, Get, Param, Query, UseGuards } from '@nestjs/common';
import type { AdminCompletionDetail, AdminInboxPage, AdminPolicyVersions, AdminStats } from '@flywheel/contracts';
import { AdminReadService } from './admin-read.service';
import { AdminSessionGuard } from './admin-session.guard';

@Controller('admin/api')
@UseGuards(AdminSessionGuard)
export class AdminReadController {
  constructor(private readonly reads: AdminReadService) {}

  @Get('inbox')
  inbox(@Query() query: unknown): Promise<AdminInboxPage> {
    return this.reads.inbox(query);
  }

  @Get('policy-versions')
  policyVersions(): Promise<AdminPolicyVersions> {
    return this.reads.policyVersions();
  }

  @Get('completions/:id')
  completion(@Param('id') id: string): Promise<AdminCompletionDetail> {
    return this.reads.completion(id);
  }

  @Get('stats')
  stats(@Query() query: unknown): Promise<AdminStats> {
    return this.reads.stats(query);
  }
}
