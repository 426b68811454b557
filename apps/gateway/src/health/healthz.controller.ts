/** GET /healthz: the whole mesh at a glance; 200 when every service is up, 503 otherwise, same body. */
import { Controller, Get, Res } from '@nestjs/common';
import { HealthzService } from './healthz.service';

interface ReplyLike {
  status(code: number): { send(body: unknown): unknown };
}

@Controller()
export class HealthzController {
  constructor(private readonly health: HealthzService) {}

  @Get('healthz')
  async healthz(@Res() reply: ReplyLike) {
    const report = await this.health.report();
    return reply.status(report.status === 'ok' ? 200 : 503).send(report);
  }
}
