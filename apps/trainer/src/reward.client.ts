/**
 * The reward service as PPO's, GRPO's and eval's scorer (with a reward spec: verifiable functions weighed in): `reward.score` over NATS in requests of at most REWARD_MAX_PAIRS,
 * with a wait until the service serves an expected version (after the loop promotes a new reward model) and a
 * refusal of scores from any other version, so a run never mixes two reward models silently. Not the scoring
 * itself (apps/reward).
 */
import { REWARD_MAX_PAIRS, rewardInfoSchema, rewardScoreResponseSchema, SUBJECTS, type RewardReference, type RewardScoreRequest, type RewardSpec } from '@flywheel/contracts';
import type { MeshConnection } from '@flywheel/mesh';

export interface ScorePair {
  prompt: RewardScoreRequest['pairs'][number]['prompt'];
  response: string;
  reference?: RewardReference;
}

export class RewardClient {
  constructor(
    private readonly mesh: MeshConnection,
    /** Only scores from this version are accepted (null: any). */
    private readonly version: string | null,
    private readonly timeoutMs = 60_000,
    /** Verifiable rewards with (or instead of) the reward model; a spec without the model needs no model loaded. */
    private readonly rewards: RewardSpec | null = null,
  ) {}

  /** Resolves once reward.info reports the expected version (polling), or rejects after `waitMs`. */
  async ready(waitMs: number): Promise<string> {
    const deadline = Date.now() + waitMs;
    let last = 'no answer';
    for (;;) {
      try {
        const info = await this.mesh.client.request(SUBJECTS.reward.info, {}, rewardInfoSchema, { timeoutMs: 5_000, retryUndeliveredMs: 5_000 });
        if (this.rewards?.model === 0) return 'functions';
        if (info.ready && info.version !== null && (this.version === null || info.version === this.version)) return info.version;
        last = info.version === null ? 'no reward model loaded' : `serving ${info.version}${info.ready ? '' : ' (not ready)'}`;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
      if (Date.now() > deadline) throw new Error(`reward service is not serving ${this.version ?? 'a model'} after ${waitMs} ms (${last})`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  async score(pairs: readonly ScorePair[]): Promise<number[]> {
    return (await this.scoreParts(pairs)).scores;
  }

  /** Scores and, with a reward spec, each part of them per pair (`model` and every function by name). */
  async scoreParts(pairs: readonly ScorePair[]): Promise<{ scores: number[]; components?: Record<string, number[]> }> {
    const out: number[] = [];
    const parts: Record<string, number[]> = {};
    for (let i = 0; i < pairs.length; i += REWARD_MAX_PAIRS) {
      const chunk = pairs.slice(i, i + REWARD_MAX_PAIRS);
      const request = this.rewards ? { pairs: chunk, rewards: this.rewards } : { pairs: chunk };
      const r = await this.mesh.client.request(SUBJECTS.reward.score, request, rewardScoreResponseSchema, { timeoutMs: this.timeoutMs, retryUndeliveredMs: 10_000 });
      if (this.version !== null && this.rewards?.model !== 0 && r.version !== this.version) throw new Error(`reward.score answered with version ${r.version}, this run scores with ${this.version}`);
      if (r.scores.length !== chunk.length) throw new Error(`reward.score returned ${r.scores.length} scores for ${chunk.length} pairs`);
      out.push(...r.scores);
      for (const [k, v] of Object.entries(r.components ?? {})) (parts[k] ??= []).push(...v);
    }
    return { scores: out, ...(this.rewards ? { components: parts } : {}) };
  }
}
