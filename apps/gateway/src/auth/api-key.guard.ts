/**
 * Guards the OpenAI API (/v1): a bearer API key (not an admin key) and the key's rate limits.
 * Admits or throws OpenAI-shaped 401/403/429; on success the key joins the request context and the
 * x-ratelimit-* headers are set. `authorize` is also the admin login's key and scope check.
 */
import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { OpenAiError } from '../http/openai-error';
import { requestContextOf } from '../http/request-context';
import { ApiKeyStore, type ApiKey, type KeyScope } from './api-keys';
import { RateLimiter } from './rate-limiter';

export function authorize(store: ApiKeyStore, authorization: string | undefined, scope: KeyScope): ApiKey {
  const result = store.authenticate(authorization);
  if (!result.ok) {
    const message =
      result.reason === 'missing'
        ? "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        : result.reason === 'malformed'
          ? 'The Authorization header must be "Bearer <API key>".'
          : 'Incorrect API key provided.';
    throw new OpenAiError(401, 'authentication_error', message, null, result.reason === 'invalid' ? 'invalid_api_key' : null);
  }
  if (result.key.scope !== scope) {
    const message =
      scope === 'api'
        ? 'Admin keys are reserved for the admin API; use an API key for /v1.'
        : 'This endpoint needs an admin key.';
    throw new OpenAiError(403, 'permission_error', message, null, 'wrong_key_scope');
  }
  return result.key;
}

@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(
    private readonly keys: ApiKeyStore,
    private readonly limiter: RateLimiter,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    const http = context.switchToHttp();
    const req = http.getRequest<{ raw: IncomingMessage }>();
    const res = http.getResponse<{ raw: ServerResponse }>();
    const key = authorize(this.keys, req.raw.headers.authorization, 'api');
    const ctx = requestContextOf(req.raw);
    ctx.key = key;
    ctx.log.key_id = key.id;
    const admission = this.limiter.admit(key.id, key.limits);
    for (const [name, value] of Object.entries(admission.headers)) res.raw.setHeader(name, value);
    if (!admission.ok) {
      const what = admission.kind === 'requests' ? 'requests per minute' : 'tokens per minute';
      const limit = admission.kind === 'requests' ? key.limits.requestsPerMinute : key.limits.tokensPerMinute;
      throw new OpenAiError(
        429,
        admission.kind,
        `Rate limit reached for ${key.name} on ${what}: limit ${limit}. Please try again in ${admission.retryAfterS}s.`,
        null,
        'rate_limit_exceeded',
        { 'retry-after': String(admission.retryAfterS) },
      );
    }
    return true;
  }
}
