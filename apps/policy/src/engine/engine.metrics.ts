/**
 * vLLM-style serving metrics with the `flywheel_` prefix, on the service's registry: running/waiting
 * requests, KV-cache usage, preemptions, prompt/generation tokens, prefix-cache hits (read from the
 * engine's stats at scrape time), the served weights' types and bytes per decode step, and TTFT / inter-token / end-to-end / step histograms (fed by the
 * engine's observer hooks).
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { EngineObserver, EngineStats } from '@flywheel/model';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];

/** Counters that mirror a monotonically growing engine stat: at scrape time add what grew since last. */
function mirroredCounter(registry: Registry, name: string, help: string, read: () => number) {
  let seen = 0;
  return new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const now = read();
      if (now > seen) this.inc(now - seen);
      seen = now;
    },
  });
}

/** What the served model stores: matrices per weight type and the bytes one decode step streams. */
export interface ServedWeights {
  weightTypes: Partial<Record<string, number>>;
  matmulWeightBytes: number;
  kvBytesPerToken: number;
}

export function createEngineMetrics(
  registry: Registry,
  stats: () => EngineStats | null,
  weights: () => ServedWeights | null = () => null,
): EngineObserver {
  const s = () => stats();
  new Gauge({
    name: 'flywheel_model_weight_matrices',
    help: 'Weight matrices of the active model by stored type (f32, bf16, q8_0, q4_0, q4_k, q5_k, q6_k)',
    labelNames: ['dtype'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [dtype, n] of Object.entries(weights()?.weightTypes ?? {})) this.set({ dtype }, n ?? 0);
    },
  });
  new Gauge({
    name: 'flywheel_model_decode_weight_bytes',
    help: 'Bytes of weight matrices one decode step streams (all layers and the LM head, as stored)',
    registers: [registry],
    collect() {
      this.set(weights()?.matmulWeightBytes ?? 0);
    },
  });
  new Gauge({
    name: 'flywheel_kv_cache_bytes_per_token',
    help: 'Bytes one token takes in the KV cache (K and V over all layers; FLYWHEEL_KV_DTYPE)',
    registers: [registry],
    collect() {
      this.set(weights()?.kvBytesPerToken ?? 0);
    },
  });
  new Gauge({ name: 'flywheel_num_requests_running', help: 'Sequences in the running batch', registers: [registry], collect() { this.set(s()?.running ?? 0); } });
  new Gauge({ name: 'flywheel_num_requests_waiting', help: 'Sequences waiting to be scheduled', registers: [registry], collect() { this.set(s()?.waiting ?? 0); } });
  new Gauge({ name: 'flywheel_kv_cache_usage_perc', help: 'Fraction of KV-cache blocks in use (0-1)', registers: [registry], collect() { this.set(s()?.kvUsage ?? 0); } });
  mirroredCounter(registry, 'flywheel_num_preemptions_total', 'Sequences preempted (freed and recomputed later)', () => s()?.preemptions ?? 0);
  mirroredCounter(registry, 'flywheel_prompt_tokens_total', 'Prompt tokens prefilled', () => s()?.promptTokens ?? 0);
  mirroredCounter(registry, 'flywheel_generation_tokens_total', 'Tokens generated', () => s()?.generationTokens ?? 0);
  mirroredCounter(registry, 'flywheel_prefix_cache_hits_total', 'KV blocks reused from the prefix cache', () => s()?.prefixCacheHitBlocks ?? 0);
  mirroredCounter(registry, 'flywheel_prefix_cache_queries_total', 'KV blocks looked up in the prefix cache', () => s()?.prefixCacheQueriedBlocks ?? 0);

  const ttft = new Histogram({ name: 'flywheel_time_to_first_token_seconds', help: 'Time from arrival to first token', buckets: LATENCY_BUCKETS, registers: [registry] });
  const itl = new Histogram({ name: 'flywheel_inter_token_latency_seconds', help: 'Time between consecutive tokens of a sequence', buckets: LATENCY_BUCKETS, registers: [registry] });
  const e2e = new Histogram({ name: 'flywheel_e2e_request_latency_seconds', help: 'Time from arrival to finish, per choice', buckets: LATENCY_BUCKETS, registers: [registry] });
  const batch = new Histogram({ name: 'flywheel_batch_size', help: 'Sequences per engine step', buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256], registers: [registry] });
  const stepTokens = new Histogram({ name: 'flywheel_iteration_tokens', help: 'Tokens per engine step', buckets: [1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096], registers: [registry] });
  const finished = new Counter({ name: 'flywheel_request_success_total', help: 'Finished choices by reason', labelNames: ['finish_reason'], registers: [registry] });

  return {
    onFirstToken: (_id, _c, ms) => ttft.observe(ms / 1000),
    onInterToken: (_id, _c, ms) => itl.observe(ms / 1000),
    onFinish: (_id, _c, ms, reason) => {
      e2e.observe(ms / 1000);
      finished.inc({ finish_reason: reason });
    },
    onStep: (info) => {
      batch.observe(info.sequences);
      stepTokens.observe(info.tokens);
    },
  };
}
