/**
 * reward.score with a reward spec: the reward model's scores (when the spec weighs it), every reward function's values
 * (libs/rl: declarative checks in-process, the moderation verdict over NATS, user modules in worker threads loaded
 * from FLYWHEEL_REWARD_FUNCTIONS_DIR only), and their weighted sum; the parts come back as `components`. A function
 * that cannot be evaluated (a missing reference column, a bad schema, a module outside the folder or none allowed) is
 * an `invalid_payload` naming `rewards.functions`. Not the reward model (reward-model.service.ts).
 */
import path from 'node:path';
import { Inject, Injectable, Logger, Optional, type OnApplicationShutdown } from '@nestjs/common';
import {
  MODERATION_MAX_BATCH,
  moderationResponseSchema,
  SUBJECTS,
  type RewardFunction,
  type RewardScoreRequest,
  type RewardScoreResponse,
  type RewardSpec,
} from '@flywheel/contracts';
import type { RewardConfig } from '@flywheel/config';
import { MeshConnection, MeshError, SERVICE_CONFIG } from '@flywheel/mesh';
import { combineRewards, evaluateRewardFunctions, RewardFunctionError, RewardModuleRunner, type RewardContext } from '@flywheel/rl';

@Injectable()
export class RewardFunctionsService implements OnApplicationShutdown {
  private readonly logger = new Logger('reward-functions');
  private readonly functionsDir: string | null;
  private readonly runner: RewardModuleRunner | null;

  constructor(
    @Inject(SERVICE_CONFIG) config: RewardConfig,
    @Optional() private readonly mesh?: MeshConnection,
  ) {
    this.functionsDir = config.reward.functionsDir ? path.resolve(config.reward.functionsDir) : null;
    this.runner = this.functionsDir ? new RewardModuleRunner(this.functionsDir, (m) => this.logger.warn(m)) : null;
  }

  async onApplicationShutdown(): Promise<void> {
    await this.runner?.close();
  }

  async score(req: RewardScoreRequest & { rewards: RewardSpec }, model: (r: RewardScoreRequest) => Promise<RewardScoreResponse>): Promise<RewardScoreResponse> {
    const spec = req.rewards;
    const fromModel = spec.model > 0 ? await model({ pairs: req.pairs }) : null;
    const pairs: RewardContext[] = req.pairs.map((p) => ({ prompt: p.prompt, response: p.response, reference: p.reference }));
    let components: Record<string, number[]>;
    try {
      components = await evaluateRewardFunctions(spec.functions, pairs, { moderate: this.mesh ? (t) => this.moderate(t) : undefined, runModule: this.runner ? (fn, ctx) => this.runModule(fn, ctx) : undefined });
    } catch (err) {
      if (err instanceof RewardFunctionError) throw new MeshError('invalid_payload', err.message, 'rewards.functions');
      throw err;
    }
    return {
      scores: combineRewards(spec, fromModel?.scores ?? null, components, req.pairs.length),
      model: fromModel?.model ?? 'reward-functions',
      version: fromModel?.version ?? 'functions',
      components: { ...(fromModel ? { model: fromModel.scores } : {}), ...components },
    };
  }

  /** Whether moderation lets each text through as output; the moderation service answers over NATS. */
  private async moderate(texts: string[]): Promise<boolean[]> {
    const out: boolean[] = [];
    for (let i = 0; i < texts.length; i += MODERATION_MAX_BATCH) {
      const r = await this.mesh!.client.request(SUBJECTS.moderation.check, { input: texts.slice(i, i + MODERATION_MAX_BATCH), direction: 'output' }, moderationResponseSchema, { timeoutMs: 10_000 });
      out.push(...r.flywheel_results.map((v) => v.action === 'allow'));
    }
    return out;
  }

  /** A module inside FLYWHEEL_REWARD_FUNCTIONS_DIR only: a spec comes over the wire, the folder is the operator's. */
  private runModule(fn: Extract<RewardFunction, { kind: 'module' }>, ctx: RewardContext): Promise<number> {
    const file = path.resolve(this.functionsDir!, fn.path);
    const rel = path.relative(this.functionsDir!, file);
    if (rel.startsWith('..') || path.isAbsolute(rel)) throw new RewardFunctionError(fn.name, `${fn.path} is outside FLYWHEEL_REWARD_FUNCTIONS_DIR`);
    return this.runner!.run(fn, ctx);
  }
}
