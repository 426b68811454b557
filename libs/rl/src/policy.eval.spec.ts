/**
 * runPolicyEval on the committed stories260K: both policies sample the same prompts with the same seeds, the scorer
 * and the moderation check see every sample in prompt order, the report's numbers are those of the scores, flags and
 * samples it was given, KL(candidate || active) is 0 for the same weights and grows as the candidate drifts (here:
 * the active policy at a lower temperature), a seed reproduces the report, and a reward model or no prompt is
 * refused. The gate's bounds alone are policy.eval.gate.spec.ts.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { kernelsReference } from '@flywheel/kernels';
import { loadCheckpoint, ModelLoadError, writeHfCheckpoint, type Checkpoint, type RewardChatMessage } from '@flywheel/model';
import { bestOfNYardstick, gateVerdict, rewardGainStd, runPolicyEval, type EvalOptions, type EvalReport } from './policy.eval';
import { meanStd } from './ppo.math';

jest.setTimeout(60_000);

const MODEL = path.resolve(__dirname, '../../../models/stories260K');
const PROMPTS: RewardChatMessage[][] = ['dog', 'cat', 'duck'].map((a) => [{ role: 'user', content: `Tell me a story about a ${a}.` }]);
const SAMPLES = 4;
const MAX_NEW = 24;

type Pair = { prompt: RewardChatMessage[]; response: string };

/** What the scorer and moderation were asked, in call order, around a deterministic rule for each. */
class Recorder {
  scored: Pair[][] = [];
  moderated: string[][] = [];
  static reward = (text: string): number => (text.match(/[aeiou]/g) ?? []).length - 0.2 * text.length;
  static flagged = (text: string): boolean => / the /.test(text);
  score: EvalOptions['score'] = async (pairs) => {
    this.scored.push(pairs.map((p) => ({ prompt: p.prompt, response: p.response })));
    return pairs.map((p) => Recorder.reward(p.response));
  };
  moderate = async (texts: string[]): Promise<boolean[]> => {
    this.moderated.push([...texts]);
    return texts.map(Recorder.flagged);
  };
}

describe('rewardGainStd', () => {
  it('is the gain in the active version spread; finite and signed when the active rewards do not spread', () => {
    expect(rewardGainStd({ mean: 1, std: 2 }, { mean: 2, std: 5 })).toBe(0.5);
    // A constant-scoring active version: the pooled spread, and the worse candidate is negative (a 0 would pass a 0 gate).
    expect(rewardGainStd({ mean: 1, std: 0 }, { mean: 0, std: 2 })).toBeCloseTo(-1 / Math.SQRT2);
    expect(rewardGainStd({ mean: 1, std: 0 }, { mean: 3, std: 2 })).toBeCloseTo(2 / Math.SQRT2);
    // Neither spreads: raw units, never Infinity (it would be null in the job's JSON).
    expect(rewardGainStd({ mean: 1, std: 0 }, { mean: 1.5, std: 0 })).toBe(0.5);
    expect(rewardGainStd({ mean: 1, std: 0 }, { mean: 1, std: 0 })).toBe(0);
    const report = (gain: number) => ({ reward_gain_std: gain, kl: 0, flag_rate_before: null, flag_rate_after: null }) as EvalReport;
    const gate = { minRewardGainStd: 0, maxKl: 1, maxFlagRateIncrease: 0 };
    expect(gateVerdict(report(rewardGainStd({ mean: 1, std: 0 }, { mean: 0, std: 0 })), gate).promote).toBe(false);
    expect(gateVerdict(report(rewardGainStd({ mean: 1, std: 0 }, { mean: 2, std: 0 })), gate).promote).toBe(true);
  });
});

describe('runPolicyEval (stories260K)', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'policy-eval-spec-'));
  let base: Checkpoint;
  /** The active policy's weights under another directory. */
  const sameDir = path.join(root, 'same');
  /** The active policy at temperature 1/k: model.norm.weight × k scales every logit by k (tied embeddings, no bias). */
  const sharpDir = (k: number) => path.join(root, `sharp-${k}`);
  const rewardDir = path.join(root, 'rm');

  beforeAll(async () => {
    base = await loadCheckpoint(MODEL);
    const baseConfig = JSON.parse(readFileSync(path.join(MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;
    const write = (dir: string, weights: Map<string, Float32Array>, scoreLabels: number | null = null) =>
      writeHfCheckpoint(dir, { spec: base.spec, weights, scoreLabels, baseConfig, tokenizerDir: MODEL });
    await write(sameDir, new Map(base.weights));
    for (const k of [1.5, 3]) {
      const w = new Map(base.weights);
      w.set('model.norm.weight', base.weights.get('model.norm.weight')!.map((x) => x * k));
      await write(sharpDir(k), w);
    }
    const rm = new Map(base.weights);
    rm.set('score.weight', kernelsReference.randomF32(base.spec.hiddenSize, kernelsReference.makeRng(3), 0.5));
    await write(rewardDir, rm, 1);
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  const evaluate = async (candidateDir: string, extra: Partial<EvalOptions> = {}): Promise<{ report: EvalReport; rec: Recorder }> => {
    const rec = new Recorder();
    const report = await runPolicyEval({
      candidateDir,
      activeDir: MODEL,
      prompts: PROMPTS,
      samples: SAMPLES,
      maxNewTokens: MAX_NEW,
      seed: 7,
      score: rec.score,
      moderate: rec.moderate,
      threads: 1,
      ...extra,
    });
    return { report, rec };
  };

  it('samples the same prompts with the same seeds on both sides: the same policy is its own twin (KL 0, no gain)', async () => {
    const { report, rec } = await evaluate(sameDir);
    // Active first, then candidate; each prompt `samples` times, in prompt order.
    expect(rec.scored).toHaveLength(2);
    for (const call of rec.scored) {
      expect(call).toHaveLength(PROMPTS.length * SAMPLES);
      call.forEach((p, i) => expect(p.prompt).toEqual(PROMPTS[Math.floor(i / SAMPLES)]));
    }
    expect(rec.scored[1].map((p) => p.response)).toEqual(rec.scored[0].map((p) => p.response));
    // A seed per sample, not one per eval: a prompt's samples differ.
    PROMPTS.forEach((_, i) => expect(new Set(rec.scored[0].slice(i * SAMPLES, (i + 1) * SAMPLES).map((p) => p.response)).size).toBeGreaterThan(1));
    expect(rec.moderated).toEqual(rec.scored.map((call) => call.map((p) => p.response)));

    expect(report.kl).toBe(0);
    expect(report.reward_after).toBe(report.reward_before);
    expect(report.reward_gain_std).toBe(0);
    expect(report.flag_rate_after).toBe(report.flag_rate_before);
    expect(report.response_length_after).toBe(report.response_length_before);
    expect(report.response_length_before).toBeGreaterThan(0);
    expect(report.response_length_before).toBeLessThanOrEqual(MAX_NEW);
    expect(gateVerdict(report, { minRewardGainStd: 0, maxKl: 5, maxFlagRateIncrease: 0 })).toEqual({ promote: true, reasons: [] });
  });

  it('reports the numbers of the scores, flags and samples it was given; a drifting candidate has KL > 0 that grows with the drift', async () => {
    const mild = await evaluate(sharpDir(1.5));
    const strong = await evaluate(sharpDir(3));
    for (const { report, rec } of [mild, strong]) {
      const [before, after] = rec.scored.map((call) => meanStd(call.map((p) => Recorder.reward(p.response))));
      expect(report).toMatchObject({ prompts: PROMPTS.length, samples: SAMPLES, reward_before: before.mean, reward_std_before: before.std, reward_after: after.mean, reward_std_after: after.std });
      expect(report.reward_gain_std).toBeCloseTo((after.mean - before.mean) / before.std, 12);
      // The yardsticks come from the same samples: best-of-n of the active's, and the gain at equal length.
      expect(report.best_of_n).toEqual(bestOfNYardstick(rec.scored[0].map((p) => Recorder.reward(p.response)), SAMPLES, before.std));
      expect(Number.isFinite(report.reward_gain_std_length_controlled)).toBe(true);
      const rate = (texts: string[]) => texts.filter(Recorder.flagged).length / texts.length;
      expect(report.flag_rate_before).toBe(rate(rec.moderated[0]));
      expect(report.flag_rate_after).toBe(rate(rec.moderated[1]));
      // One example per prompt: the candidate's first sample of it and the active version's (same seed), with their scores.
      expect(report.examples).toEqual(
        PROMPTS.map((p, i) => {
          const first = rec.scored[1][i * SAMPLES];
          const active = rec.scored[0][i * SAMPLES];
          return {
            prompt: p[0].content,
            response: first.response,
            reward: Recorder.reward(first.response),
            active_response: active.response,
            active_reward: Recorder.reward(active.response),
          };
        }),
      );
      expect(rec.scored[1].map((p) => p.response)).not.toEqual(rec.scored[0].map((p) => p.response));
    }
    // The active side is the same in both runs: same prompts, same seeds.
    expect(strong.rec.scored[0]).toEqual(mild.rec.scored[0]);
    expect(mild.report.kl).toBeGreaterThan(0);
    expect(strong.report.kl).toBeGreaterThan(mild.report.kl);
    // The gate reads these numbers: a KL bound under the measured KL refuses it, one at it passes.
    const r = strong.report;
    expect(gateVerdict(r, { minRewardGainStd: r.reward_gain_std, maxKl: r.kl / 2, maxFlagRateIncrease: 1 }).reasons).toEqual([`KL ${r.kl.toFixed(3)} nats > ${r.kl / 2}`]);
    expect(gateVerdict(r, { minRewardGainStd: r.reward_gain_std, maxKl: r.kl, maxFlagRateIncrease: 1 }).promote).toBe(true);
  });

  it('measures KL to the original base too: a chain of small steps is refused by the base bound', async () => {
    // base → active (×1.5 sharper) → candidate (×3): each step is small against its predecessor, the chain is not.
    const chain = await evaluate(sharpDir(3), { activeDir: sharpDir(1.5), baseDir: MODEL });
    const direct = await evaluate(sharpDir(3)); // the same candidate samples, the base as the active policy
    expect(chain.report.kl_base).toBeCloseTo(direct.report.kl, 9);
    expect(chain.report.kl_base!).toBeGreaterThan(chain.report.kl);
    const gate = { minRewardGainStd: -100, maxKl: chain.report.kl + 0.01, maxFlagRateIncrease: 1 };
    expect(gateVerdict(chain.report, { ...gate, maxKlBase: null }).promote).toBe(true);
    const refused = gateVerdict(chain.report, { ...gate, maxKlBase: (chain.report.kl + chain.report.kl_base!) / 2 });
    expect(refused.promote).toBe(false);
    expect(refused.reasons).toEqual([expect.stringMatching(/^KL to the base /)]);
    // Without a base, or with the active as the base, kl_base is what it can be.
    expect((await evaluate(sharpDir(3), { activeDir: sharpDir(1.5) })).report.kl_base).toBeNull();
    expect((await evaluate(sharpDir(3), { activeDir: sharpDir(1.5), baseDir: sharpDir(1.5) })).report.kl_base).toBe(chain.report.kl);
  });

  it('is reproducible under its seed; another seed samples other responses', async () => {
    const a = await evaluate(sharpDir(1.5));
    const b = await evaluate(sharpDir(1.5));
    expect(b.report).toEqual(a.report);
    expect(b.rec.scored).toEqual(a.rec.scored);
    const c = await evaluate(sharpDir(1.5), { seed: 8 });
    expect(c.rec.scored[0].map((p) => p.response)).not.toEqual(a.rec.scored[0].map((p) => p.response));
  });

  it('ends responses at the stop strings, and leaves flag rates null without moderation', async () => {
    const { report, rec } = await evaluate(sharpDir(1.5), { stop: ['.'], moderate: null });
    expect(rec.moderated).toEqual([]);
    expect(report.flag_rate_before).toBeNull();
    expect(report.flag_rate_after).toBeNull();
    for (const call of rec.scored) for (const p of call) expect(p.response).not.toContain('.');
  });

  it('refuses an eval without prompts and a reward model in place of a policy', async () => {
    await expect(evaluate(sameDir, { prompts: [] })).rejects.toThrow(/at least one prompt/);
    await expect(evaluate(rewardDir)).rejects.toThrow(ModelLoadError);
    await expect(evaluate(rewardDir)).rejects.toThrow(/causal LM policies/);
  });
});
