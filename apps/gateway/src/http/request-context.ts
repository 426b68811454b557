/**
 * Per-request state the gateway carries from the first hook to the last log line: the request id
 * (client's `x-request-id` when sane, else ours), arrival time, the authenticated key, and fields the
 * handlers add for the access log. Kept in a WeakMap keyed by Node's request object; no globals.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { RECONNECT_RETRY_MS } from '@flywheel/mesh';
import type { ApiKey } from '../auth/api-keys';

export interface RequestContext {
  requestId: string;
  /** performance.now() at arrival. */
  startedAt: number;
  key: ApiKey | null;
  /** Overrides the status in logs and metrics (499: the client went away mid-response). */
  statusOverride: number | null;
  /** Extra access-log fields (snake_case), e.g. completion_id, prompt_tokens. */
  log: Record<string, string | number | boolean | null>;
}

const contexts = new WeakMap<IncomingMessage, RequestContext>();
const SANE_REQUEST_ID = /^[\w.:@-]{1,128}$/;

/**
 * How long a mesh call of this request may still resend while NATS is down: one RECONNECT_RETRY_MS budget per
 * request, shared by its calls (prompt check, then generate), so an outage answers 503 after one budget, not one
 * per call.
 */
export function meshRetryBudgetMs(ctx: Pick<RequestContext, 'startedAt'>, now = performance.now()): number {
  return Math.max(0, Math.round(ctx.startedAt + RECONNECT_RETRY_MS - now));
}

export function newRequestId(): string {
  return `req_${randomUUID().replaceAll('-', '')}`;
}

export function createRequestContext(raw: IncomingMessage, startedAt: number): RequestContext {
  const incoming = raw.headers['x-request-id'];
  const requestId = typeof incoming === 'string' && SANE_REQUEST_ID.test(incoming) ? incoming : newRequestId();
  const ctx: RequestContext = { requestId, startedAt, key: null, statusOverride: null, log: {} };
  contexts.set(raw, ctx);
  return ctx;
}

/** The context of a request that went through the gateway's onRequest hook (every request does). */
export function requestContextOf(raw: IncomingMessage): RequestContext {
  const ctx = contexts.get(raw);
  if (ctx) return ctx;
  // Only reachable when a route runs without the hook (unit tests of controllers); make one.
  return createRequestContext(raw, performance.now());
}
