// runGrpo on the real stories260K checkpoint with rule scorers (no reward model needed here): every step's metrics
// are finite and plausible, the first step's KL is zero (the rollouts come from the reference itself), groups that
// all score the same are dropped, the trained policy is a loadable HF checkpoint, a run stopped at its checkpoint and
// resumed ends bitwise identical to an uninterrupted one, and RLOO learns a reward it can reach (short answers).
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadCheckpoint } from '@flywheel/model';
import { changedTensors, targetedTensors } from '../../train/src/lora-merge.testing';
import { GrpoStoppedError, runGrpo, type GrpoOptions } from './grpo.trainer';

const MODEL = path.resolve(__dirname, '../../../models/stories260K');
const prompts = ['dog', 'cat', 'bird', 'frog', 'duck', 'bear'].map((a) => [{ role: 'user' as const, content: `Tell me a story about a ${a}.` }]);
const happy: GrpoOptions['score'] = async (pairs) => pairs.map((p) => (p.response.match(/happy|the/gi) ?? []).length);
const config = { steps: 4, promptsPerStep: 3, groupSize: 4, miniBatch: 6, maxNewTokens: 24, lr: 1e-4, seed: 3, checkpointEvery: 2 };

describe('runGrpo (stories260K, rule scorers)', () => {
  const dirs: string[] = [];
  const tmp = () => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'grpo-spec-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('logs finite metrics per step and writes a loadable policy; a stopped run resumes to identical results', async () => {
    const straight = tmp();
    const a = await runGrpo({ policyDir: MODEL, prompts, score: happy, outDir: straight, config, threads: 2 });
    expect(a.history).toHaveLength(4);
    for (const m of a.history) {
      for (const [k, v] of Object.entries(m)) expect([k, Number.isFinite(v)]).toEqual([k, true]);
      expect(m.response_length).toBeGreaterThan(0);
      expect(m.response_length).toBeLessThanOrEqual(24);
      expect(m.groups_kept).toBeGreaterThan(0);
      expect(m.groups_kept).toBeLessThanOrEqual(1);
    }
    expect(a.history[0].kl).toBeCloseTo(0, 5);
    expect(a.history[0].approx_kl).toBeCloseTo(0, 5); // one epoch: the first mini-batch's ratio is exactly 1
    expect(a.history[3].kl).not.toBe(0);
    expect((await loadCheckpoint(straight)).numLabels ?? null).toBeNull();

    const resumed = tmp();
    let steps = 0;
    await expect(runGrpo({ policyDir: MODEL, prompts, score: happy, outDir: resumed, config, threads: 2, onStep: () => void steps++, shouldStop: () => steps === 2 })).rejects.toBeInstanceOf(GrpoStoppedError);
    let resumedFrom = -1;
    const b = await runGrpo({ policyDir: MODEL, prompts, score: happy, outDir: resumed, config, threads: 2, resume: true, onResume: (s) => void (resumedFrom = s) });
    expect(resumedFrom).toBe(2);
    expect(b.history.map((m) => [m.reward_mean, m.kl, m.policy_loss])).toEqual(a.history.map((m) => [m.reward_mean, m.kl, m.policy_loss]));
    expect(readFileSync(path.join(resumed, 'model.safetensors')).equals(readFileSync(path.join(straight, 'model.safetensors')))).toBe(true);
    await expect(runGrpo({ policyDir: MODEL, prompts, score: happy, outDir: resumed, config: { ...config, clipHigh: 0.2 }, threads: 2, resume: true })).rejects.toThrow(/differs in clipHigh/);
  }, 240_000);

  it('trains LoRA adapters with the frozen base (the same model, adapters off) as the reference; a stopped LoRA run resumes to identical results', async () => {
    const lora = { ...config, lr: 2e-3, lora: { rank: 4, targets: ['q_proj', 'v_proj', 'down_proj'] as ('q_proj' | 'v_proj' | 'down_proj')[] } };
    const straight = tmp();
    const a = await runGrpo({ policyDir: MODEL, prompts, score: happy, outDir: straight, config: lora, threads: 2 });
    expect(a.history[0].kl).toBeCloseTo(0, 5); // B starts at zero: policy = base = reference
    expect(a.history[3].kl).toBeGreaterThan(0); // the adapters moved the policy away from the base
    // The written policy is merged: only the targeted projections differ from the base; the adapter sits beside it.
    const base = (await loadCheckpoint(MODEL)).weights;
    expect(changedTensors(base, (await loadCheckpoint(straight)).weights)).toEqual(targetedTensors(base, lora.lora.targets));
    expect(existsSync(path.join(straight, 'adapter', 'adapter_model.safetensors'))).toBe(true);
    // Memory: no reference copy, no gradients or moments for the base.
    const full = await runGrpo({ policyDir: MODEL, prompts, score: happy, outDir: tmp(), config: { ...config, steps: 1, checkpointEvery: 0 }, threads: 2 });
    console.log(`GRPO model memory: full ${full.history[0].model_memory_mb} MiB, LoRA ${a.history[0].model_memory_mb} MiB`);
    // At least the reference's copy, the base's gradients and its two AdamW moments: 4 x the weights (activations,
    // the same in both, dominate on a model this small).
    const weightsMib = [...base.values()].reduce((n, t) => n + t.byteLength, 0) / 2 ** 20;
    expect(full.history[0].model_memory_mb! - a.history[0].model_memory_mb!).toBeGreaterThan(4 * weightsMib * 0.98);

    const resumed = tmp();
    let steps = 0;
    await expect(runGrpo({ policyDir: MODEL, prompts, score: happy, outDir: resumed, config: lora, threads: 2, onStep: () => void steps++, shouldStop: () => steps === 2 })).rejects.toBeInstanceOf(GrpoStoppedError);
    const b = await runGrpo({ policyDir: MODEL, prompts, score: happy, outDir: resumed, config: lora, threads: 2, resume: true });
    expect(b.resumedFromStep).toBe(2);
    expect(b.history.map((m) => [m.reward_mean, m.kl, m.policy_loss])).toEqual(a.history.map((m) => [m.reward_mean, m.kl, m.policy_loss]));
    expect(readFileSync(path.join(resumed, 'model.safetensors')).equals(readFileSync(path.join(straight, 'model.safetensors')))).toBe(true);
  }, 240_000);

  it('drops groups that all score the same: a constant reward trains nothing', async () => {
    const r = await runGrpo({ policyDir: MODEL, prompts, score: async (p) => p.map(() => 1), outDir: tmp(), config: { ...config, steps: 1 }, threads: 2 });
    expect(r.history[0]).toMatchObject({ groups_kept: 0, grad_norm: 0, policy_loss: 0 });
  }, 120_000);

  it('online DPO: the first step loss is ln 2 (policy = reference), and best-over-worst pairs of its own samples teach it shorter answers', async () => {
    const one = await runGrpo({ policyDir: MODEL, prompts, score: happy, outDir: tmp(), config: { ...config, algorithm: 'online-dpo', steps: 1, checkpointEvery: 0 }, threads: 2 });
    // 3 prompts → at most 3 pairs, one mini-batch of 6 sequences: the loss is taken before any update.
    expect(one.history[0].groups_kept).toBeGreaterThan(0);
    expect(one.history[0].policy_loss).toBeCloseTo(Math.log(2), 9);
    expect(one.history[0].kl).toBeCloseTo(0, 9);
    const short: GrpoOptions['score'] = async (pairs) => pairs.map((p) => -p.response.length / 10);
    const r = await runGrpo({
      policyDir: MODEL,
      prompts,
      score: short,
      outDir: tmp(),
      config: { algorithm: 'online-dpo', steps: 8, promptsPerStep: 6, groupSize: 4, miniBatch: 12, maxNewTokens: 32, lr: 2e-3, dpoBeta: 0.1, seed: 5, checkpointEvery: 0 },
      threads: 2,
    });
    const first = (r.history[0].reward_mean + r.history[1].reward_mean) / 2;
    const last = (r.history[6].reward_mean + r.history[7].reward_mean) / 2;
    expect(last).toBeGreaterThan(first + 1);
    expect(r.history.at(-1)!.kl).toBeGreaterThan(0);
  }, 240_000);

  it('RLOO learns a reward it can reach: shorter answers', async () => {
    const short: GrpoOptions['score'] = async (pairs) => pairs.map((p) => -p.response.length / 10);
    const r = await runGrpo({
      policyDir: MODEL,
      prompts,
      score: short,
      outDir: tmp(),
      config: { algorithm: 'rloo', steps: 8, promptsPerStep: 6, groupSize: 4, miniBatch: 12, maxNewTokens: 32, lr: 2e-3, seed: 5, checkpointEvery: 0 },
      threads: 2,
    });
    const first = (r.history[0].reward_mean + r.history[1].reward_mean) / 2;
    const last = (r.history[6].reward_mean + r.history[7].reward_mean) / 2;
    expect(last).toBeGreaterThan(first + 1);
  }, 240_000);
});
