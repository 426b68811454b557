/**
 * /admin/api/exports: create an export of approved data, list them, download one as JSONL (with its sha256 in
 * x-content-sha256). Thin: each route calls AdminExportService once; all behind AdminSessionGuard.
 */
import { Body, Controller, Get, HttpCode, Param, Post, Req, Res, UseGuards } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import type { AdminExport, AdminExportList } from '@flywheel/contracts';
import { AdminExportService } from './admin-export.service';
import { AdminSessionGuard, adminSessionOf } from './admin-session.guard';

interface HeaderReply {
  header(name: string, value: string): unknown;
}

@Controller('admin/api/exports')
@UseGuards(AdminSessionGuard)
export class AdminExportsController {
  constructor(private readonly exports: AdminExportService) {}

  @Post()
  @HttpCode(200)
  create(@Body() body: unknown, @Req() req: { raw: IncomingMessage }): Promise<AdminExport> {
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
