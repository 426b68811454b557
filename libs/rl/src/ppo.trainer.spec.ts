// runPpo on the real stories260K checkpoint with a rule scorer (the count of "happy" in a response, so no reward
// model is needed here; the reward model path is the demo's and test/rl-demo.test.ts's): every step's metrics are
// finite and plausible, the trained policy is a loadable HF checkpoint, and a run stopped at its checkpoint and
// resumed ends bitwise identical to an uninterrupted run (weights, history, KL coefficient); under LoRA the same with
// adapters on the policy and the critic (ppo.critic.spec.ts checks the critic's frozen base), and less model memory.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadCheckpoint } from '@flywheel/model';
import { changedTensors, targetedTensors } from '../../train/src/lora-merge.testing';
import { PpoStoppedError, runPpo, type PpoOptions } from './ppo.trainer';

const MODEL = path.resolve(__dirname, '../../../models/stories260K');
const prompts = ['dog', 'cat', 'bird', 'frog', 'duck', 'bear'].map((a) => [{ role: 'user' as const, content: `Tell me a story about a ${a}.` }]);
const score: PpoOptions['score'] = async (pairs) => pairs.map((p) => (p.response.match(/happy/gi) ?? []).length - 0.01 * p.response.length);
const config = { steps: 4, rolloutBatch: 12, miniBatch: 6, maxNewTokens: 24, ppoEpochs: 2, lr: 1e-4, criticLr: 1e-3, klCoef: 0.05, klTarget: 2, klHorizon: 100, seed: 3, checkpointEvery: 2 };

describe('runPpo (stories260K, rule scorer)', () => {
  const dirs: string[] = [];
  const tmp = () => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'ppo-spec-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('logs finite metrics per step and writes a loadable policy; a stopped run resumes to identical results', async () => {
    const straight = tmp();
    const a = await runPpo({ policyDir: MODEL, prompts, score, outDir: straight, config, threads: 2 });
    expect(a.history).toHaveLength(4);
    for (const m of a.history) {
      for (const [k, v] of Object.entries(m)) expect([k, Number.isFinite(v)]).toEqual([k, true]);
      expect(m.response_length).toBeGreaterThan(0);
      expect(m.response_length).toBeLessThanOrEqual(24);
      expect(m.entropy).toBeGreaterThan(0);
      expect(m.clip_fraction).toBeGreaterThanOrEqual(0);
      expect(m.clip_fraction).toBeLessThanOrEqual(1);
    }
    expect(a.history[0].kl).toBeCloseTo(0, 5); // the first rollouts come from the reference itself
    expect(a.history[3].kl).not.toBe(0);
    const ck = await loadCheckpoint(straight);
    expect(ck.numLabels ?? null).toBeNull();

    const resumed = tmp();
    let steps = 0;
    await expect(runPpo({ policyDir: MODEL, prompts, score, outDir: resumed, config, threads: 2, onStep: () => void steps++, shouldStop: () => steps === 2 })).rejects.toBeInstanceOf(PpoStoppedError);
    let resumedFrom = -1;
    const b = await runPpo({ policyDir: MODEL, prompts, score, outDir: resumed, config, threads: 2, resume: true, onResume: (s) => void (resumedFrom = s) });
    expect(resumedFrom).toBe(2);
    expect(b.resumedFromStep).toBe(2);
    expect(b.klCoef).toBe(a.klCoef);
    expect(b.history.map((m) => [m.reward_mean, m.kl, m.policy_loss])).toEqual(a.history.map((m) => [m.reward_mean, m.kl, m.policy_loss]));
    expect(readFileSync(path.join(resumed, 'model.safetensors')).equals(readFileSync(path.join(straight, 'model.safetensors')))).toBe(true);

    // Another configuration in the same folder is refused rather than silently mixed.
    await expect(runPpo({ policyDir: MODEL, prompts, score, outDir: resumed, config: { ...config, lr: 2e-4 }, threads: 2, resume: true })).rejects.toThrow(/differs in lr/);
  }, 240_000);

  it('trains LoRA adapters on the policy and the critic with the frozen base (adapters off) as the reference; a stopped LoRA run resumes to identical results', async () => {
    const lora = { ...config, lr: 2e-3, lora: { rank: 4, targets: ['q_proj', 'v_proj'] as ('q_proj' | 'v_proj')[] } };
    const straight = tmp();
    const a = await runPpo({ policyDir: MODEL, prompts, score, outDir: straight, config: lora, threads: 2 });
    expect(a.history[0].kl).toBeCloseTo(0, 5); // B starts at zero: policy = base = reference
    expect(a.history[3].kl).toBeGreaterThan(0);
    const base = (await loadCheckpoint(MODEL)).weights;
    expect(changedTensors(base, (await loadCheckpoint(straight)).weights)).toEqual(targetedTensors(base, lora.lora.targets));
    expect(existsSync(path.join(straight, 'adapter', 'adapter_model.safetensors'))).toBe(true);
    // The critic follows the policy's lora: its resume point holds its adapters, a SEQ_CLS one.
    const criticDir = (d: string): string => path.join(d, 'ppo-state', 'critic');
    expect(JSON.parse(readFileSync(path.join(criticDir(straight), 'adapter', 'adapter_config.json'), 'utf8'))).toMatchObject({ r: 4, task_type: 'SEQ_CLS' });

    // Memory: the critic's base holds no gradients or AdamW moments (3 x its weights, here the policy's). Both runs'
    // first steps see the same rollouts; the critic's adapters (weights, gradients, moments, their activations) take
    // back a few percent of that on a model this small (ppo.critic.spec.ts checks the exact gradient and moment bytes).
    const fullCritic = await runPpo({ policyDir: MODEL, prompts, score, outDir: tmp(), config: { ...lora, steps: 1, checkpointEvery: 0, criticLora: null }, threads: 2 });
    expect(fullCritic.history[0].policy_loss).toBe(a.history[0].policy_loss);
    const weightsMib = [...base.values()].reduce((n, t) => n + t.byteLength, 0) / 2 ** 20;
    expect(fullCritic.history[0].model_memory_mb! - a.history[0].model_memory_mb!).toBeGreaterThan(3 * weightsMib * 0.9);

    const resumed = tmp();
    let steps = 0;
    await expect(runPpo({ policyDir: MODEL, prompts, score, outDir: resumed, config: lora, threads: 2, onStep: () => void steps++, shouldStop: () => steps === 2 })).rejects.toBeInstanceOf(PpoStoppedError);
    // A run saved with a LoRA critic is not resumed with a full one (nor, by the same key, the other way round).
    await expect(runPpo({ policyDir: MODEL, prompts, score, outDir: resumed, config: { ...lora, criticLora: null }, threads: 2, resume: true })).rejects.toThrow(/differs in criticLora/);
    const b = await runPpo({ policyDir: MODEL, prompts, score, outDir: resumed, config: lora, threads: 2, resume: true });
    expect(b.history.map((m) => [m.reward_mean, m.kl, m.policy_loss, m.value_loss])).toEqual(a.history.map((m) => [m.reward_mean, m.kl, m.policy_loss, m.value_loss]));
    expect(readFileSync(path.join(resumed, 'model.safetensors')).equals(readFileSync(path.join(straight, 'model.safetensors')))).toBe(true);
    for (const f of ['model.safetensors', 'adapter/adapter_model.safetensors', 'optimizer.safetensors']) {
      expect([f, readFileSync(path.join(criticDir(resumed), f)).equals(readFileSync(path.join(criticDir(straight), f)))]).toEqual([f, true]);
    }

    // A LoRA run saved before criticLora existed (a full critic, no entry in its key) resumes as one by default.
    const old = tmp();
    let n = 0;
    await expect(runPpo({ policyDir: MODEL, prompts, score, outDir: old, config: { ...lora, steps: 2, criticLora: null }, threads: 2, onStep: () => void n++, shouldStop: () => n === 1 })).rejects.toBeInstanceOf(PpoStoppedError);
    const statePath = path.join(old, 'ppo-state', 'policy', 'training_state.json');
    const saved = JSON.parse(readFileSync(statePath, 'utf8')) as { extra: Record<string, unknown> };
    delete saved.extra.criticLora;
    writeFileSync(statePath, JSON.stringify(saved));
    const resumedOld = await runPpo({ policyDir: MODEL, prompts, score, outDir: old, config: { ...lora, steps: 2 }, threads: 2, resume: true });
    expect(resumedOld.history).toHaveLength(2);
    expect(existsSync(path.join(criticDir(old), 'adapter'))).toBe(false);
  }, 300_000);

  it('takes the KL as a k3 loss term and normalised rewards when asked', async () => {
    const r = await runPpo({ policyDir: MODEL, prompts, score, outDir: tmp(), config: { ...config, steps: 2, klMode: 'loss', rewardNorm: 'batch', checkpointEvery: 0 }, threads: 2 });
    for (const m of r.history) for (const [k, v] of Object.entries(m)) expect([k, Number.isFinite(v)]).toEqual([k, true]);
    expect(r.history[1].kl).not.toBe(0);
  }, 120_000);
});
