/**
 * The gateway's one exception filter (registered once, by GatewayModule): whatever escapes a route, a guard,
 * Fastify's body parsing or the not-found handler leaves as OpenAI's `{"error": {...}}` with the right status,
 * a store that cannot be reached as 503 store_unavailable. Real bugs (500) are logged with their stack; nothing
 * a client sends should reach that branch.
 */
import { Catch, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { toOpenAiError } from './openai-error';
import { requestContextOf } from './request-context';

interface ReplyLike {
  raw: ServerResponse;
  sent?: boolean;
  status(code: number): ReplyLike;
  headers(values: Record<string, string>): ReplyLike;
  send(body: unknown): unknown;
}

@Catch()
export class OpenAiExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('OpenAiExceptionFilter');

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const reply = http.getResponse<ReplyLike>();
    const req = http.getRequest<{ raw?: IncomingMessage } | IncomingMessage>();
    const raw = 'raw' in req && req.raw ? req.raw : (req as IncomingMessage);
    const error = toOpenAiError(exception);
    if (error.status >= 500 && error.code === 'internal_error') {
      this.logger.error(`unhandled error: ${exception instanceof Error ? (exception.stack ?? exception.message) : String(exception)}`);
    }
    const ctx = requestContextOf(raw);
    ctx.log.error_code = error.code ?? error.type;
    if (reply.raw.headersSent) {
      if (!reply.raw.writableEnded) reply.raw.end();
      return;
    }
    reply.status(error.status).headers(error.headers).send(error.toBody());
  }
}
