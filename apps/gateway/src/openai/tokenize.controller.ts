/**
 * POST /tokenize and POST /detokenize (vLLM's routes, outside /v1 as vLLM serves them): the same API key
 * and rate limits as /v1, then one call into TokenizeService. Errors are OpenAI-shaped by the global filter.
 */
import { Body, Controller, HttpCode, Post, UseGuards } from '@nestjs/common';
import type { DetokenizeResponse, TokenizeResponse } from '@flywheel/contracts';
import { ApiKeyGuard } from '../auth/api-key.guard';
import { TokenizeService } from './tokenize.service';

@Controller()
@UseGuards(ApiKeyGuard)
export class TokenizeController {
  constructor(private readonly tokenizer: TokenizeService) {}

  @Post('tokenize')
  @HttpCode(200)
  tokenize(@Body() body: unknown): Promise<TokenizeResponse> {
    return this.tokenizer.tokenize(body);
  }

  @Post('detokenize')
  @HttpCode(200)
  detokenize(@Body() body: unknown): Promise<DetokenizeResponse> {
    return this.tokenizer.detokenize(body);
  }
}
