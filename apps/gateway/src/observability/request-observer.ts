/**
 * The gateway's Fastify hooks around every request: assign the request id (echoed in `x-request-id`),
 * then when the response closes count it, time it and write one structured JSON access-log line.
 * Headers are never logged (the Authorization header holds a secret); the key appears as its id.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequestContext } from '../http/request-context';
import type { GatewayMetrics } from './gateway.metrics';

/** Probe routes are scraped every few seconds; they are logged only at debug level. */
const QUIET_ROUTES = new Set(['/metrics', '/livez', '/readyz', '/healthz']);

export type LogLine = (line: Record<string, unknown>) => void;

export const stdoutJsonLog: LogLine = (line) => {
  process.stdout.write(`${JSON.stringify(line)}\n`);
};

interface HookRequest {
  raw: IncomingMessage;
  method: string;
  routeOptions?: { url?: string };
}
interface HookReply {
  raw: ServerResponse;
}

export class RequestObserver {
  constructor(
    private readonly metrics: GatewayMetrics,
    private readonly service: { instanceId: string; verbose: boolean; quiet: boolean },
    private readonly log: LogLine = stdoutJsonLog,
  ) {}

  /** Fastify onRequest hook (sync form). */
  onRequest = (req: HookRequest, reply: HookReply, done: () => void): void => {
    const ctx = createRequestContext(req.raw, performance.now());
    reply.raw.setHeader('x-request-id', ctx.requestId);
    this.metrics.inFlight.inc();
    reply.raw.once('close', () => {
      this.metrics.inFlight.dec();
      const endpoint = req.routeOptions?.url ?? 'unmatched';
      const status = ctx.statusOverride ?? (reply.raw.writableFinished ? reply.raw.statusCode : 499);
      const durationMs = performance.now() - ctx.startedAt;
      this.metrics.requests.inc({ endpoint, status: String(status) });
      this.metrics.e2eLatency.observe({ endpoint }, durationMs / 1000);
      if (this.service.quiet || (QUIET_ROUTES.has(endpoint) && !this.service.verbose)) return;
      this.log({
        time: new Date().toISOString(),
        level: status >= 500 ? 'error' : status >= 400 ? 'warn' : 'info',
        service: 'gateway',
        instance: this.service.instanceId,
        msg: 'request',
        request_id: ctx.requestId,
        method: req.method,
        path: (req.raw.url ?? '').split('?')[0],
        endpoint,
        status,
        duration_ms: Math.round(durationMs * 100) / 100,
        ...ctx.log,
      });
    });
    done();
  };
}
