/**
 * The reward service's Prometheus metrics (prefix `flywheel_reward_`) on the service registry: scoring requests by
 * outcome, pairs per request and end-to-end scoring latency. Not the shared service metrics (libs/mesh).
 */
import { Counter, Histogram, type Registry } from 'prom-client';

export interface RewardMetrics {
  requests: Counter<'outcome'>;
  batchSize: Histogram;
  latency: Histogram;
}

export function createRewardMetrics(registry: Registry): RewardMetrics {
  return {
    requests: new Counter({ name: 'flywheel_reward_requests_total', help: 'reward.score requests by outcome (ok, unavailable, error)', labelNames: ['outcome'], registers: [registry] }),
    batchSize: new Histogram({ name: 'flywheel_reward_batch_size', help: 'Pairs scored per reward.score request', buckets: [1, 2, 4, 8, 16, 32, 64], registers: [registry] }),
    latency: new Histogram({
      name: 'flywheel_reward_latency_seconds',
      help: 'Time to tokenize and score one reward.score request',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
  };
}
