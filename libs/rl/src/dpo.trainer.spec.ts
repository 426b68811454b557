/**
 * runDpoTraining on models/stories260K (the same files as shared/models/stories260K-hf) and the synthetic preference
 * set of test/reward.support.ts (happy endings chosen over sad ones): only response tokens are scored, held-out
 * implied-reward accuracy rises from the untrained tie (0.5) to at least 0.85 within the time budget, the checkpoint
 * loads, and a run stopped after a checkpoint resumes to the same weights, bit for bit.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DPO_DEFAULTS } from '@flywheel/contracts';
import { loadCheckpoint, type Checkpoint } from '@flywheel/model';
import { CHECKPOINT_ADAPTER_DIR, readPeftAdapter } from '@flywheel/train';
import { syntheticPreferences, toJsonl } from '../../../test/reward.support';
import { changedTensors, targetedTensors } from '../../train/src/lora-merge.testing';
import { dpoSide, parseDpoJsonl, runDpoTraining, type DpoOptions, type DpoProgress } from './dpo.trainer';

jest.setTimeout(120_000);

const root = path.resolve(__dirname, '../../..');
const modelDir = path.join(root, 'models', 'stories260K');

describe('runDpoTraining', () => {
  const dirs: string[] = [];
  const tmp = (): string => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'dpo-spec-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  let ck: Checkpoint;
  beforeAll(async () => {
    ck = await loadCheckpoint(modelDir);
  });

  const options = (outDir: string, extra: Partial<DpoOptions> = {}): DpoOptions => ({
    modelDir,
    data: { text: toJsonl(syntheticPreferences(60)), source: 'prefs.jsonl' },
    outDir,
    steps: 30,
    lr: DPO_DEFAULTS.lr,
    batchSize: 8,
    heldout: 0.25,
    seed: 1,
    threads: 1,
    ...extra,
  });

  it('scores only the response: not the prompt, not an assistant turn inside the prompt; keeps the end when cut', () => {
    const prompt = [
      { role: 'user' as const, content: 'Tell me a story.' },
      { role: 'assistant' as const, content: 'Which animal?' },
      { role: 'user' as const, content: 'A cat.' },
    ];
    const side = dpoSide(ck, prompt, [{ role: 'assistant', content: 'The cat slept.' }], 512)!;
    const first = side.assistant.indexOf(true);
    expect(side.assistant.slice(first).every(Boolean)).toBe(true);
    expect(ck.tokenizer.decode(side.ids.slice(first))).toContain('The cat slept.');
    expect(ck.tokenizer.decode(side.ids.slice(0, first))).toContain('Which animal?');
    const cut = dpoSide(ck, prompt, [{ role: 'assistant', content: 'The cat slept.' }], 12)!;
    expect(cut.ids).toEqual(side.ids.slice(-12));
    expect(cut.assistant).toEqual(side.assistant.slice(-12));
    expect(dpoSide(ck, prompt, [{ role: 'assistant', content: 'The cat slept.' }], 1)).toBeNull();
    expect(parseDpoJsonl(ck, toJsonl(syntheticPreferences(5)), 'p', 256)).toHaveLength(5);
  });

  it('raises held-out implied-reward accuracy to ≥ 0.85, reports every step and writes a loadable checkpoint', async () => {
    const seen: DpoProgress[] = [];
    const t0 = Date.now();
    const r = await runDpoTraining(options(tmp(), { onProgress: (p) => void seen.push(p) }));
    const seconds = (Date.now() - t0) / 1000;
    console.log(
      `DPO 30 steps: held-out accuracy ${r.heldoutAccuracyBefore} → ${r.heldoutAccuracy}, margin ${r.heldoutMarginBefore.toFixed(4)} → ` +
        `${r.heldoutMarginAfter.toFixed(4)}, loss ${r.lossFirst.toFixed(4)} → ${r.lossLast.toFixed(4)}, ${seconds.toFixed(1)} s`,
    );
    expect(seen.map((p) => p.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(seen.every((p) => p.steps === 30 && p.gradNorm > 0 && p.lr > 0 && Number.isFinite(p.loss))).toBe(true);
    expect(seen[0].loss).toBeCloseTo(Math.LN2, 4); // policy = reference at step 1
    // Chosen responses gain likelihood relative to the reference, rejected ones lose it.
    expect(seen[seen.length - 1].chosenReward).toBeGreaterThan(0);
    expect(seen[seen.length - 1].rejectedReward).toBeLessThan(0);
    expect(r).toMatchObject({ pairs: 60, heldoutPairs: 15, trainPairs: 45, steps: 30, resumedFromStep: 0 });
    expect(r.heldoutAccuracyBefore).toBe(0.5);
    expect(r.heldoutMarginBefore).toBe(0);
    expect(r.heldoutAccuracy).toBeGreaterThanOrEqual(0.85);
    expect(r.heldoutMarginAfter).toBeGreaterThan(0);
    expect(r.lossLast).toBeLessThan(r.lossFirst);
    expect(seconds).toBeLessThan(30);
    const out = await loadCheckpoint(r.outDir);
    expect(out.spec).toEqual(ck.spec);
    expect(out.numLabels).toBeNull();
  });

  /** A run stopped right after its checkpoint at step 3 and resumed, beside an uninterrupted one with the same options. */
  const stopAndResume = async (short: Partial<DpoOptions>) => {
    const whole = await runDpoTraining(options(tmp(), short));
    const out = tmp();
    const stop = new Error('stopped after the checkpoint');
    await expect(runDpoTraining(options(out, { ...short, onCheckpoint: () => { throw stop; } }))).rejects.toBe(stop);
    const resumed = await runDpoTraining(options(out, { ...short, resume: true }));
    expect(resumed.resumedFromStep).toBe(3);
    expect(resumed.lossFirst).toBe(whole.lossFirst);
    expect(resumed.lossLast).toBe(whole.lossLast);
    expect(resumed.heldoutAccuracy).toBe(whole.heldoutAccuracy);
    const a = (await loadCheckpoint(whole.outDir)).weights;
    const b = (await loadCheckpoint(resumed.outDir)).weights;
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort());
    expect(changedTensors(a, b)).toEqual([]);
    return out;
  };

  it('resumes from a checkpoint to the same weights, bit for bit', async () => {
    const short = { steps: 6, checkpointEvery: 3 };
    const out = await stopAndResume(short);
    // Other options: the state is not this run's, so it starts afresh.
    expect((await runDpoTraining(options(out, { ...short, beta: 0.2, resume: true }))).resumedFromStep).toBe(0);
  });

  it('trains LoRA adapters on the frozen base (the reference): accuracy rises, only targeted projections move, the adapter is written', async () => {
    const lora = { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'down_proj'] as ('q_proj' | 'v_proj' | 'down_proj')[] };
    const r = await runDpoTraining(options(tmp(), { lora, lr: 2e-3 }));
    expect(r.frozenParams).toBeGreaterThan(0);
    expect(r.trainableParams).toBeLessThan(r.frozenParams / 4);
    expect(r.heldoutAccuracyBefore).toBe(0.5); // zero-initialised B: the policy starts as the reference
    expect(r.heldoutAccuracy).toBeGreaterThanOrEqual(0.8);
    expect(r.lossLast).toBeLessThan(r.lossFirst);
    // outDir holds merged weights: targeted projections changed, everything else is the base bit for bit.
    expect(changedTensors(ck.weights, (await loadCheckpoint(r.outDir)).weights)).toEqual(targetedTensors(ck.weights, lora.targets));
    const adapter = await readPeftAdapter(path.join(r.outDir, CHECKPOINT_ADAPTER_DIR));
    expect(adapter.config).toMatchObject({ rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'down_proj'], taskType: 'CAUSAL_LM' });
    expect(adapter.weights.size).toBe(ck.spec.numLayers * 3 * 2);
  });

  it('resumes a LoRA run from base + saved adapters to the same weights, bit for bit', async () => {
    await stopAndResume({ steps: 6, checkpointEvery: 3, lora: { rank: 4, targets: ['q_proj', 'v_proj'] }, lr: 2e-3 });
  });

  it('stops with a checkpoint when asked, and resumes from it', async () => {
    const out = tmp();
    let steps = 0;
    const stopped = runDpoTraining(options(out, { steps: 6, checkpointEvery: 0, onProgress: () => void steps++, shouldStop: () => steps >= 2 }));
    await expect(stopped).rejects.toMatchObject({ name: 'DpoStoppedError', step: 2 });
    expect((await runDpoTraining(options(out, { steps: 6, resume: true }))).resumedFromStep).toBe(2);
  });
});
