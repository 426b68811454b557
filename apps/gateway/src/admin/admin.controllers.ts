/**
 * The admin API's routes under /admin/api: each parses nothing itself, calls one service method and
 * returns its answer. Every route but the login is behind AdminSessionGuard (cookie, CSRF on writes).
 */
import { Body, Controller, Delete, Get, HttpCode, Param, Post, Query, Req, Res, UseGuards } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import type {
  AdminCompletionDetail,
  AdminExport,
  AdminExportList,
  AdminInboxPage,
  AdminPolicyVersions,
  AdminReviewsResponse,
  AdminSession,
  AdminStats,
} from '@flywheel/contracts';
import { AdminAuthService, sessionBodyOf } from './admin-auth.service';
import { AdminExportService } from './admin-export.service';
import { AdminReadService } from './admin-read.service';
import { AdminReviewService } from './admin-review.service';
import { AdminSessionGuard, adminSessionOf } from './admin-session.guard';

interface RawRequest {
  raw: IncomingMessage;
}

interface HeaderReply {
  header(name: string, value: string): unknown;
}

/** Secure cookies when the client reached us over https (directly or through a proxy that says so). */
function isHttps(raw: IncomingMessage): boolean {
  return raw.headers['x-forwarded-proto'] === 'https' || ('encrypted' in raw.socket && raw.socket.encrypted === true);
}

@Controller('admin/api/session')
export class AdminSessionController {
  constructor(private readonly auth: AdminAuthService) {}

  @Post()
  @HttpCode(200)
  login(@Body() body: unknown, @Req() req: RawRequest, @Res({ passthrough: true }) reply: HeaderReply): AdminSession {
    const { session, cookie } = this.auth.login(body, isHttps(req.raw));
    reply.header('set-cookie', cookie);
    reply.header('cache-control', 'no-store');
    return session;
  }

  @Get()
  @UseGuards(AdminSessionGuard)
  current(@Req() req: RawRequest, @Res({ passthrough: true }) reply: HeaderReply): AdminSession {
    reply.header('cache-control', 'no-store');
    return sessionBodyOf(adminSessionOf(req.raw));
  }

  @Delete()
  @HttpCode(204)
  @UseGuards(AdminSessionGuard)
  logout(@Req() req: RawRequest, @Res({ passthrough: true }) reply: HeaderReply): void {
    reply.header('set-cookie', this.auth.logout(adminSessionOf(req.raw), isHttps(req.raw)));
  }
}

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

@Controller('admin/api/reviews')
@UseGuards(AdminSessionGuard)
export class AdminReviewsController {
  constructor(private readonly reviews: AdminReviewService) {}

  @Post()
  @HttpCode(200)
  apply(@Body() body: unknown, @Req() req: RawRequest): Promise<AdminReviewsResponse> {
    return this.reviews.apply(body, adminSessionOf(req.raw).keyId);
  }
}

@Controller('admin/api/exports')
@UseGuards(AdminSessionGuard)
export class AdminExportsController {
  constructor(private readonly exports: AdminExportService) {}

  @Post()
  @HttpCode(200)
  create(@Body() body: unknown, @Req() req: RawRequest): Promise<AdminExport> {
    return this.exports.create(body, adminSessionOf(req.raw).keyId);
  }

  @Get()
  list(): Promise<AdminExportList> {
    return this.exports.list();
  }

  @Get(':id/download')
  async download(@Param('id') id: string, @Res({ passthrough: true }) reply: HeaderReply): Promise<string> {
    const file = await this.exports.file(id);
    reply.header('content-type', 'application/x-ndjson; charset=utf-8');
    reply.header('content-disposition', `attachment; filename="${file.filename}"`);
    reply.header('x-content-sha256', file.sha256);
    return file.content;
  }
}
