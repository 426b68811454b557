/**
 * The gateway's view of the moderation service over NATS: moderation.check with the contract's
 * schemas, and the OpenAI-shaped error a client sees when the service cannot answer.
 */
import { Inject, Injectable } from '@nestjs/common';
import type { GatewayConfig } from '@flywheel/config';
import { moderationResponseSchema, SUBJECTS, type ModerationResponse, type ParsedModerationRequest } from '@flywheel/contracts';
import { MeshConnection, MeshError, RECONNECT_RETRY_MS, SERVICE_CONFIG } from '@flywheel/mesh';
import { OpenAiError, toOpenAiError } from '../http/openai-error';

@Injectable()
export class ModerationClient {
  constructor(
    private readonly mesh: MeshConnection,
    @Inject(SERVICE_CONFIG) private readonly config: GatewayConfig,
  ) {}

  /**
   * Throws MeshError: `unavailable` (no service, no NATS), `timeout`, or what the service answered. A check
   * that reached no service is resent for up to `retryUndeliveredMs` (a check is safe to repeat).
   */
  check(request: ParsedModerationRequest, retryUndeliveredMs = RECONNECT_RETRY_MS): Promise<ModerationResponse> {
    return this.mesh.client.request(SUBJECTS.moderation.check, request, moderationResponseSchema, {
      timeoutMs: this.config.gateway.moderation.checkTimeoutMs,
      retryUndeliveredMs,
    });
  }
}

/** A failed moderation.check as the HTTP error of /v1/moderations. */
export function moderationServiceError(err: unknown): OpenAiError {
  if (!(err instanceof MeshError)) return toOpenAiError(err);
  switch (err.code) {
    case 'invalid_payload':
      return OpenAiError.invalid(err.message, err.param);
    case 'unavailable':
      return new OpenAiError(503, 'server_error', `The moderation service is unavailable: ${err.message}.`, null, 'service_unavailable', {
        'retry-after': '1',
      });
    case 'timeout':
      return new OpenAiError(504, 'server_error', `The moderation service did not answer in time: ${err.message}.`, null, 'timeout');
    default:
      return new OpenAiError(502, 'server_error', `The moderation service failed: ${err.message}.`, null, 'upstream_error');
  }
}
