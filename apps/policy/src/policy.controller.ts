/**
 * The policy's NATS handlers: policy.generate streams frames (an Observable: Nest sends each as a reply and ends
 * with isDisposed; for a caller that asked for its stream mux, the mux carries the frames), policy.info answers what
 * is served, policy.tokenize / policy.detokenize use the served tokenizer. policy.cancel is an event every replica
 * receives (its own queue group), so the one running the request frees it whichever replica that is.
 */
import { Controller } from '@nestjs/common';
import { Ctx, EventPattern, MessagePattern, NatsContext, Payload } from '@nestjs/microservices';
import type { Observable } from 'rxjs';
import {
  cancelRequestSchema,
  detokenizeRequestPayloadSchema,
  generateRequestSchema,
  policyInfoRequestSchema,
  SUBJECTS,
  tokenizeRequestPayloadSchema,
  type DetokenizeResult,
  type GenerateFrame,
  type PolicyInfo,
  type TokenizeResult,
} from '@flywheel/contracts';
import { MeshHandlers, StreamMux } from '@flywheel/mesh';
import { PolicyEngineService } from './engine/policy-engine.service';

@Controller()
@MeshHandlers()
export class PolicyController {
  constructor(
    private readonly engine: PolicyEngineService,
    private readonly mux: StreamMux,
  ) {}

  /** Frames go through the caller's stream mux when it asked for one: one message per step for all its requests. */
  @MessagePattern(SUBJECTS.policy.generate)
  generate(@Payload() data: unknown, @Ctx() ctx: NatsContext): Observable<GenerateFrame> {
    return this.mux.reply(this.engine.generate(generateRequestSchema.parse(data)), this.mux.routeOf(ctx.getHeaders()));
  }

  @MessagePattern(SUBJECTS.policy.info)
  info(@Payload() data: unknown): PolicyInfo {
    policyInfoRequestSchema.parse(data);
    return this.engine.info();
  }

  @MessagePattern(SUBJECTS.policy.tokenize)
  tokenize(@Payload() data: unknown): TokenizeResult {
    return this.engine.tokenize(tokenizeRequestPayloadSchema.parse(data));
  }

  @MessagePattern(SUBJECTS.policy.detokenize)
  detokenize(@Payload() data: unknown): DetokenizeResult {
    return this.engine.detokenize(detokenizeRequestPayloadSchema.parse(data));
  }
}

/** A per-replica queue group makes the cancel event reach every replica, not one of them. */
export function cancelControllerFor(instanceId: string) {
  @Controller()
  class PolicyCancelController {
    constructor(private readonly engine: PolicyEngineService) {}

    @EventPattern(SUBJECTS.policy.cancel, { queue: `flywheel.policy.cancel.${instanceId}` })
    cancel(@Payload() data: unknown): void {
      const parsed = cancelRequestSchema.safeParse(data);
      if (parsed.success) this.engine.cancel(parsed.data.requestId);
    }
  }
  return PolicyCancelController;
}
