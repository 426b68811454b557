/**
 * POST /v1/feedback and GET /v1/feedback?completion_id=…: an API key checked by the guard, then one
 * call into FeedbackService. A replayed idempotent POST says so in `idempotent-replayed: true`.
 */
import { Body, Controller, Get, HttpCode, Inject, Post, Query, Req, Res, UseGuards } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import type { FeedbackList, FeedbackObject } from '@flywheel/contracts';
import { OpenAiError } from '../http/openai-error';
import { requestContextOf, type RequestContext } from '../http/request-context';
import { FeedbackService } from './feedback.service';
import { SERVICE_CONFIG } from '@flywheel/mesh';
import type { CommonConfig } from '@flywheel/config';
import { ApiKeyGuard } from '../auth/api-key.guard';

interface HeaderReply {
  header(name: string, value: string): unknown;
}

function keyIdOf(ctx: RequestContext): string {
  // The guard sets it on every request that reaches a handler.
  if (!ctx.key) throw new OpenAiError(401, 'authentication_error', 'Missing API key.');
  return ctx.key.id;
}

@Controller('v1/feedback')
@UseGuards(ApiKeyGuard)
export class FeedbackController {
  constructor(
    private readonly feedback: FeedbackService,
    @Inject(SERVICE_CONFIG) private readonly config: CommonConfig,
  ) {}

  @Post()
  @HttpCode(200)
  async create(@Body() body: unknown, @Req() req: { raw: IncomingMessage }, @Res({ passthrough: true }) reply: HeaderReply): Promise<FeedbackObject> {
    const ctx = requestContextOf(req.raw);
    const created = await this.feedback.create(body, { keyId: keyIdOf(ctx), requestId: ctx.requestId, gatewayInstanceId: this.config.instanceId });
    ctx.log.feedback_id = created.feedback.id;
    if (created.replayed) reply.header('idempotent-replayed', 'true');
    return created.feedback;
  }

  @Get()
  list(@Query() query: unknown, @Req() req: { raw: IncomingMessage }): Promise<FeedbackList> {
    return this.feedback.list(query, { keyId: keyIdOf(requestContextOf(req.raw)) });
  }
}
