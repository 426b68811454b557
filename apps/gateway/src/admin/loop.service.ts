/**
 * The admin API's view of the trainer's RL loop: status, pause, resume and start-now, each one request on
 * `trainer.loop` through the gateway's MeshClient with a short timeout, the reply parsed with
 * loopStatusSchema. A trainer that does not answer is a 503; the loop's logic lives in the trainer.
 */
import { Injectable } from '@nestjs/common';
import { adminLoopActionBodySchema, LOOP_SUBJECT, loopStatusSchema, type LoopControlRequest, type LoopStatus } from '@flywheel/contracts';
import { MeshConnection, MeshError } from '@flywheel/mesh';
import { fromZodError, OpenAiError, toOpenAiError } from '../http/openai-error';

/** The UI polls this every few seconds: a hung trainer must not hold its requests for the mesh's default 10 s. */
export const LOOP_REQUEST_TIMEOUT_MS = 3_000;

@Injectable()
export class AdminLoopService {
  constructor(private readonly mesh: MeshConnection) {}

  status(): Promise<LoopStatus> {
    return this.ask({ action: 'status' });
  }

  act(body: unknown): Promise<LoopStatus> {
    const parsed = adminLoopActionBodySchema.safeParse(body ?? {});
    if (!parsed.success) throw fromZodError(parsed.error, body);
    return this.ask({ action: parsed.data.action });
  }

  private async ask(request: LoopControlRequest): Promise<LoopStatus> {
    try {
      return await this.mesh.client.request(LOOP_SUBJECT, request, loopStatusSchema, { timeoutMs: LOOP_REQUEST_TIMEOUT_MS });
    } catch (err) {
      throw trainerLoopError(err);
    }
  }
}

/** A failed trainer.loop request as the admin API's error. */
export function trainerLoopError(err: unknown): OpenAiError {
  if (!(err instanceof MeshError)) return toOpenAiError(err);
  switch (err.code) {
    case 'unavailable':
    case 'timeout':
      return new OpenAiError(503, 'server_error', `The trainer is not answering on ${LOOP_SUBJECT}: ${err.message}.`, null, 'service_unavailable', {
        'retry-after': '1',
      });
    case 'invalid_payload':
      return OpenAiError.invalid(err.message, err.param ?? 'action');
    default:
      return new OpenAiError(502, 'server_error', `The trainer failed to answer on ${LOOP_SUBJECT}: ${err.message}.`, null, 'upstream_error');
  }
}
