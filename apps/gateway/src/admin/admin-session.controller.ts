/**
 * /admin/api/session: log in with an admin key (the session cookie is set and its CSRF token answered), read
 * the current session, log out. Thin: each route calls AdminAuthService once. Reading and logging out are behind
 * AdminSessionGuard; logging in is the one admin route that is not.
 */
import { Body, Controller, Delete, Get, HttpCode, Post, Req, Res, UseGuards } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import type { AdminSession } from '@flywheel/contracts';
import { AdminAuthService, sessionBodyOf } from './admin-auth.service';
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
