/**
 * The reward replica's model: serves the `reward` entry of the `models` KV (else FLYWHEEL_REWARD_MODEL as the
 * configured version; neither: reward.score answers `unavailable` while the service stays ready) and scores
 * (prompt, response) pairs with the native forward. A new KV entry is hot-swapped (ServedVersions): new requests
 * go to the new scorer at once, calls already queued on the old one finish there and report its version, and the
 * old scorer is freed after its last call. A version that cannot be fetched or loaded is refused. Not the handler.
 */
import path from 'node:path';
import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import type { RewardInfo, RewardScoreRequest, RewardScoreResponse } from '@flywheel/contracts';
import type { RewardConfig } from '@flywheel/config';
import {
  ActiveModelSource,
  MeshError,
  Readiness,
  SERVICE_CONFIG,
  SERVICE_METRICS,
  ServedVersions,
  type ActiveModelSourceLike,
  type ServiceMetrics,
} from '@flywheel/mesh';
import { createRewardScorer, loadCheckpoint, type RewardScorer } from '@flywheel/model';
import { createRewardMetrics, type RewardMetrics } from './reward.metrics';

/** One loaded version. Its scorer serializes calls, so "no call pinned" means its queue has drained. */
interface Slot {
  version: string;
  modelId: string;
  scorer: RewardScorer;
}

@Injectable()
export class RewardModelService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('reward-model');
  private readonly metrics: RewardMetrics;
  private readonly versions: ServedVersions<Slot>;
  /** Until boot has decided what to serve, no active version means "loading"; after it, "none". */
  private booted = false;

  constructor(
    @Inject(SERVICE_CONFIG) private readonly config: RewardConfig,
    @Inject(SERVICE_METRICS) serviceMetrics: ServiceMetrics,
    private readonly readiness: Readiness,
    @Inject(ActiveModelSource) source: ActiveModelSourceLike,
  ) {
    this.metrics = createRewardMetrics(serviceMetrics.registry);
    this.versions = new ServedVersions<Slot>({
      role: 'reward',
      source,
      registry: serviceMetrics.registry,
      logger: this.logger,
      // A KV version is named after itself: its cache folder is only a sha256.
      load: async (entry) => this.load(await source.fetch(entry), entry.version, entry.version),
      release: (slot) => slot.scorer.free(),
    });
    readiness.require('model');
  }

  onModuleInit(): void {
    // Not awaited: the health port answers while the model loads; readiness says when boot has decided.
    void this.boot().catch((err: unknown) => {
      process.stderr.write(`reward: cannot serve reward model ${this.config.reward.model}: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    });
  }

  async onApplicationShutdown(): Promise<void> {
    await this.versions.close();
  }

  private async boot(): Promise<void> {
    const { model, version } = this.config.reward;
    const served = await this.versions.start(
      async () => (model === null ? null : this.load(path.resolve(model), version, undefined)),
      model ?? 'no reward model',
    );
    if (!served) this.logger.log('no reward model active or configured (FLYWHEEL_REWARD_MODEL): reward.score answers unavailable');
    this.booted = true;
    this.readiness.set('model', true);
  }

  private async load(dir: string, version: string, id: string | undefined): Promise<Slot> {
    const started = Date.now();
    const ck = await loadCheckpoint(dir, { id });
    const t = this.config.reward.threads;
    const scorer = createRewardScorer(ck, { threads: t > 0 ? t : undefined });
    this.logger.log(`loaded reward model ${ck.id} as version ${version} in ${Date.now() - started} ms`);
    return { version, modelId: ck.id, scorer };
  }

  async score(req: RewardScoreRequest): Promise<RewardScoreResponse> {
    // Pinned for the call: a swap meanwhile leaves this call on its scorer, and the reply names what scored it.
    const slot = this.versions.pin();
    if (slot === null) {
      this.metrics.requests.inc({ outcome: 'unavailable' });
      throw new MeshError('unavailable', this.booted ? 'no reward model configured' : 'reward model is still loading');
    }
    try {
      return await this.scoreOn(slot, req);
    } finally {
      this.versions.unpin(slot);
    }
  }

  private async scoreOn(slot: Slot, req: RewardScoreRequest): Promise<RewardScoreResponse> {
    const bad = req.pairs.findIndex((p) => typeof p.prompt !== 'string' && !slot.scorer.hasChatTemplate);
    if (bad >= 0) throw new MeshError('invalid_payload', 'this reward model has no chat template; send the prompt as text', `pairs.${bad}.prompt`);
    const end = this.metrics.latency.startTimer();
    try {
      const scores = await slot.scorer.score(req.pairs);
      this.metrics.requests.inc({ outcome: 'ok' });
      this.metrics.batchSize.observe(req.pairs.length);
      return { scores, model: slot.modelId, version: slot.version };
    } catch (err) {
      this.metrics.requests.inc({ outcome: 'error' });
      throw err;
    } finally {
      end();
    }
  }

  info(): RewardInfo {
    const slot = this.versions.active;
    return {
      model: slot?.modelId ?? null,
      version: slot?.version ?? null,
      ready: slot !== null,
      contextLength: slot?.scorer.contextLength ?? null,
      hasChatTemplate: slot?.scorer.hasChatTemplate ?? null,
      instanceId: this.config.instanceId,
    };
  }
}
