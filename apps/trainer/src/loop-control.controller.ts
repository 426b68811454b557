/**
 * `trainer.loop` over NATS: status, pause, resume and start of the RL loop, answered with the loop status
 * (training-runs.schemas.ts). `start` with data (rl-jobs.schemas.ts) runs on that data instead of a fresh export.
 */
import { Controller } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { z } from 'zod';
import { LOOP_SUBJECT, loopControlRequestSchema, loopStartRequestSchema, type LoopStatus } from '@flywheel/contracts';
import { MeshHandlers } from '@flywheel/mesh';
import { LoopControlService } from './loop-control.service';

const requestSchema = z.union([loopStartRequestSchema, loopControlRequestSchema]);

@Controller()
@MeshHandlers()
export class LoopControlController {
  constructor(private readonly loop: LoopControlService) {}

  @MessagePattern(LOOP_SUBJECT)
  async control(@Payload() data: unknown): Promise<LoopStatus> {
    const r = requestSchema.parse(data);
    if ('data' in r) return this.loop.start('manual', { data: r.data, overrides: r.overrides });
    switch (r.action) {
      case 'pause':
        await this.loop.setPaused(true);
        return this.loop.status('paused: no run starts by itself until resumed');
      case 'resume':
        await this.loop.setPaused(false);
        return this.loop.status('resumed');
      case 'start':
        return this.loop.start('manual');
      default:
        return this.loop.status();
    }
  }
}
