/**
 * GET /admin and /admin/* (everything under /admin but the API): the admin UI's static files. An
 * unknown /admin/api/… path is the API's 404 in OpenAI's shape, not the app's index.html.
 */
import { Controller, Get, Inject, Param, Res } from '@nestjs/common';
import { OpenAiError } from '../http/openai-error';
import { serveUi } from './admin-ui.files';

export const ADMIN_UI_DIR = Symbol('ADMIN_UI_DIR');

interface StaticReply {
  status(code: number): StaticReply;
  headers(values: Record<string, string>): StaticReply;
  send(body: Buffer | string): unknown;
}

@Controller('admin')
export class AdminUiController {
  constructor(@Inject(ADMIN_UI_DIR) private readonly uiDir: string) {}

  @Get()
  async index(@Res() reply: StaticReply): Promise<void> {
    await this.send(reply, '');
  }

  @Get('*')
  async file(@Param('*') rest: string | undefined, @Res() reply: StaticReply): Promise<void> {
    const requestPath = rest ?? '';
    if (requestPath === 'api' || requestPath.startsWith('api/')) {
      throw new OpenAiError(404, 'invalid_request_error', `Unknown request URL: GET /admin/${requestPath}.`, null, 'unknown_url');
    }
    await this.send(reply, requestPath);
  }

  private async send(reply: StaticReply, requestPath: string): Promise<void> {
    const answer = await serveUi(this.uiDir, requestPath);
    reply.status(answer.status).headers(answer.headers).send(answer.body);
  }
}
