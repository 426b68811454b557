/**
 * The admin API's view of the trainer's RL loop: status, pause, resume and start-now, each one request on
 * `trainer.loop` through the gateway's MeshClient with a short timeout (longer for a start, which exports the
 * approved pairs first), the reply parsed with loopStatusSchema. A trainer that does not answer is a 503; a start the trainer refused is the error of its
 * refusal (409 or 503, the trainer's reason as the message), so no client mistakes it for a started run. The loop's
 * logic lives in the trainer.
 */
import { Injectable } from '@nestjs/common';
import {
  adminLoopActionBodySchema,
  LOOP_SUBJECT,
  loopStatusSchema,
  type LoopControlRequest,
  type LoopStartRefusal,
  type LoopStatus,
} from '@flywheel/contracts';
import { MeshConnection, MeshError } from '@flywheel/mesh';
import { fromZodError, OpenAiError, toOpenAiError } from '../http/openai-error';

/** The UI polls this every few seconds: a hung trainer must not hold its requests for the mesh's default 10 s. */
export const LOOP_REQUEST_TIMEOUT_MS = 3_000;
/** A start builds the export of every approved pair before it answers: more than a poll's wait on a large store. */
export const LOOP_START_TIMEOUT_MS = 15_000;

@Injectable()
export class AdminLoopService {
  constructor(private readonly mesh: MeshConnection) {}

  status(): Promise<LoopStatus> {
    return this.ask({ action: 'status' });
  }

  async act(body: unknown): Promise<LoopStatus> {
    const parsed = adminLoopActionBodySchema.safeParse(body ?? {});
    if (!parsed.success) throw fromZodError(parsed.error, body);
    const { action } = parsed.data;
    const status = await this.ask({ action }, action === 'start' ? LOOP_START_TIMEOUT_MS : LOOP_REQUEST_TIMEOUT_MS);
    if (action === 'start' && status.refused) throw loopRefusalError(status.refused);
    return status;
  }

  private async ask(request: LoopControlRequest, timeoutMs = LOOP_REQUEST_TIMEOUT_MS): Promise<LoopStatus> {
    try {
      return await this.mesh.client.request(LOOP_SUBJECT, request, loopStatusSchema, { timeoutMs });
    } catch (err) {
      throw trainerLoopError(err);
    }
  }
}

/** A start the trainer refused as the admin API's error: the trainer's reason, a status and code per refusal. */
export function loopRefusalError(refusal: LoopStartRefusal): OpenAiError {
  const message = `The loop did not start: ${refusal.message.replace(/\.$/, '')}.`;
  switch (refusal.code) {
    case 'already_running':
      return new OpenAiError(409, 'invalid_request_error', message, null, 'loop_already_running');
    case 'no_training_data':
      return new OpenAiError(409, 'invalid_request_error', message, null, 'no_training_data');
    case 'store_unavailable':
      return new OpenAiError(503, 'server_error', message, null, 'store_unavailable', { 'retry-after': '5' });
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
