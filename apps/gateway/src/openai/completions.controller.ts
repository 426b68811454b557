/**
 * POST /v1/chat/completions, POST /v1/completions and POST /v1/responses: API key checked by the guard, then one
 * call into GenerationService (or ResponsesService, which runs on it), which writes the response itself (JSON or
 * SSE) through a ResponseSink.
 */
import { Body, Controller, HttpCode, Post, Req, Res, UseGuards } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { ApiKeyGuard } from '../auth/api-key.guard';
import { requestContextOf } from '../http/request-context';
import { HttpResponseSink, type RawReply } from '../http/response-sink';
import { GenerationService } from './generation.service';
import { ResponsesService } from './responses.service';

@Controller('v1')
@UseGuards(ApiKeyGuard)
export class CompletionsController {
  constructor(
    private readonly generation: GenerationService,
    private readonly responses: ResponsesService,
  ) {}

  @Post('chat/completions')
  @HttpCode(200)
  async chatCompletions(@Body() body: unknown, @Req() req: { raw: IncomingMessage }, @Res() reply: RawReply): Promise<void> {
    await this.generation.chatCompletion(body, requestContextOf(req.raw), new HttpResponseSink(reply));
  }

  @Post('responses')
  @HttpCode(200)
  async createResponse(@Body() body: unknown, @Req() req: { raw: IncomingMessage }, @Res() reply: RawReply): Promise<void> {
    await this.responses.create(body, requestContextOf(req.raw), new HttpResponseSink(reply));
  }

  @Post('completions')
  @HttpCode(200)
  async completions(@Body() body: unknown, @Req() req: { raw: IncomingMessage }, @Res() reply: RawReply): Promise<void> {
    await this.generation.completion(body, requestContextOf(req.raw), new HttpResponseSink(reply));
  }
}
