/**
 * The gateway's Prometheus series, on the process registry (SERVICE_METRICS): requests by endpoint and
 * status, end-to-end latency, time to first token as the client sees it (request arrival → first
 * content byte written), tokens served, requests in flight, and the moderation the gateway itself
 * applies (prompt checks before generation, the in-process stream check on output). Names follow vLLM's
 * style; the moderation service counts its own checks separately.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

const LATENCY_BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export class GatewayMetrics {
  readonly requests: Counter<'endpoint' | 'status'>;
  readonly e2eLatency: Histogram<'endpoint'>;
  readonly timeToFirstToken: Histogram<'endpoint'>;
  readonly tokens: Counter<'kind'>;
  readonly inFlight: Gauge;
  readonly moderationChecks: Counter<'direction' | 'action' | 'source'>;
  readonly moderationFlags: Counter<'category' | 'direction' | 'action'>;
  readonly moderationLatency: Histogram<'direction'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.requests = new Counter({
      name: 'flywheel_gateway_requests_total',
      help: 'HTTP requests answered, by route and status (499: client went away first)',
      labelNames: ['endpoint', 'status'],
      registers,
    });
    this.e2eLatency = new Histogram({
      name: 'flywheel_gateway_e2e_request_latency_seconds',
      help: 'Request arrival to response end, by route',
      labelNames: ['endpoint'],
      buckets: LATENCY_BUCKETS_S,
      registers,
    });
    this.timeToFirstToken = new Histogram({
      name: 'flywheel_gateway_time_to_first_token_seconds',
      help: 'Streaming requests: arrival to the first content chunk written to the client',
      labelNames: ['endpoint'],
      buckets: LATENCY_BUCKETS_S,
      registers,
    });
    this.tokens = new Counter({
      name: 'flywheel_gateway_tokens_total',
      help: 'Tokens served through the OpenAI API (prompt, completion)',
      labelNames: ['kind'],
      registers,
    });
    this.inFlight = new Gauge({ name: 'flywheel_gateway_requests_in_flight', help: 'HTTP requests being answered', registers });
    this.moderationChecks = new Counter({
      name: 'flywheel_gateway_moderation_checks_total',
      help: 'Moderation verdicts the gateway acted on: input per request, output per choice; source service (NATS) or local (in-process)',
      labelNames: ['direction', 'action', 'source'],
      registers,
    });
    this.moderationFlags = new Counter({
      name: 'flywheel_gateway_moderation_flags_total',
      help: 'Categories that fired in those verdicts, by category, direction and action (block or flag)',
      labelNames: ['category', 'direction', 'action'],
      registers,
    });
    this.moderationLatency = new Histogram({
      name: 'flywheel_gateway_moderation_latency_seconds',
      help: 'Time moderation adds: input = the prompt check before generation; output = the in-process check of one delta',
      labelNames: ['direction'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5],
      registers,
    });
  }
}
