/**
 * The reward replica's model: loads the configured LlamaForSequenceClassification checkpoint at boot (readiness
 * waits for it) and scores (prompt, response) pairs with the native forward. With no model configured it stays
 * ready and answers every score with `unavailable`. Not the NATS handler (reward.controller.ts).
 */
import path from 'node:path';
import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import type { RewardInfo, RewardScoreRequest, RewardScoreResponse } from '@flywheel/contracts';
import type { RewardConfig } from '@flywheel/config';
import { MeshError, Readiness, SERVICE_CONFIG, SERVICE_METRICS, type ServiceMetrics } from '@flywheel/mesh';
import { createRewardScorer, loadCheckpoint, type RewardScorer } from '@flywheel/model';
import { createRewardMetrics, type RewardMetrics } from './reward.metrics';

@Injectable()
export class RewardModelService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('reward-model');
  private readonly metrics: RewardMetrics;
  private scorer: RewardScorer | null = null;
  private modelId: string | null = null;

  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: RewardConfig,
    @Inject(SERVICE_METRICS) serviceMetrics: ServiceMetrics,
    private readonly readiness: Readiness,
  ) {
    this.metrics = createRewardMetrics(serviceMetrics.registry);
    if (config.reward.model !== null) readiness.require('model');
  }

  onModuleInit(): void {
    const dir = this.config.reward.model;
    if (dir === null) {
      this.logger.log('no reward model configured (FLYWHEEL_REWARD_MODEL): reward.score answers unavailable');
      return;
    }
    // Not awaited: the health port answers while the model loads; readiness says when it is done.
    void this.load(dir).catch((err: unknown) => {
      process.stderr.write(`reward: cannot serve reward model ${dir}: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    });
  }

  onApplicationShutdown(): void {
    this.scorer?.free();
    this.scorer = null;
  }

  private async load(dir: string): Promise<void> {
    const started = Date.now();
    const ck = await loadCheckpoint(path.resolve(dir));
    const t = this.config.reward.threads;
    this.scorer = createRewardScorer(ck, { threads: t > 0 ? t : undefined });
    this.modelId = ck.id;
    this.readiness.set('model', true);
    this.logger.log(`serving reward model ${ck.id} as version ${this.config.reward.version}, loaded in ${Date.now() - started} ms`);
  }

  async score(req: RewardScoreRequest): Promise<RewardScoreResponse> {
    const scorer = this.scorer;
    if (scorer === null || this.modelId === null) {
      this.metrics.requests.inc({ outcome: 'unavailable' });
      throw new MeshError('unavailable', this.config.reward.model === null ? 'no reward model configured' : 'reward model is still loading');
    }
    const bad = req.pairs.findIndex((p) => typeof p.prompt !== 'string' && !scorer.hasChatTemplate);
    if (bad >= 0) throw new MeshError('invalid_payload', 'this reward model has no chat template; send the prompt as text', `pairs.${bad}.prompt`);
    const end = this.metrics.latency.startTimer();
    try {
      const scores = await scorer.score(req.pairs);
      this.metrics.requests.inc({ outcome: 'ok' });
      this.metrics.batchSize.observe(req.pairs.length);
      return { scores, model: this.modelId, version: this.config.reward.version };
    } catch (err) {
      this.metrics.requests.inc({ outcome: 'error' });
      throw err;
    } finally {
      end();
    }
  }

  info(): RewardInfo {
    return {
      model: this.modelId,
      version: this.scorer ? this.config.reward.version : null,
      ready: this.scorer !== null,
      contextLength: this.scorer?.contextLength ?? null,
      hasChatTemplate: this.scorer?.hasChatTemplate ?? null,
      instanceId: this.config.instanceId,
    };
  }
}
