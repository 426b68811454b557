/**
 * runKtoTraining on models/stories260K (the same files as shared/models/stories260K-hf) and the synthetic unpaired KTO
 * set of test/reward.support.ts (happy endings desirable, sad ones undesirable): only completion tokens are scored, the
 * mismatched pairs of a batch are its own prompts with its other completions, held-out implied-reward separation rises
 * from the untrained tie (0.5) within the time budget, the checkpoint loads, a run stopped after a checkpoint resumes to
 * the same weights bit for bit (full and LoRA), and bad data is refused with a message that says what is wrong.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KTO_DEFAULTS } from '@flywheel/contracts';
import { loadCheckpoint, type Checkpoint } from '@flywheel/model';
import { CHECKPOINT_ADAPTER_DIR, readPeftAdapter } from '@flywheel/train';
import { syntheticKto, syntheticPreferences, toJsonl } from '../../../test/reward.support';
import { changedTensors, targetedTensors } from '../../train/src/lora-merge.testing';
import { ktoBatches, parseKtoJsonl, runKtoTraining, type KtoOptions, type KtoProgress } from './kto.trainer';

jest.setTimeout(120_000);

const root = path.resolve(__dirname, '../../..');
const modelDir = path.join(root, 'models', 'stories260K');

describe('runKtoTraining', () => {
  const dirs: string[] = [];
  const tmp = (): string => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'kto-spec-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  let ck: Checkpoint;
  beforeAll(async () => {
    ck = await loadCheckpoint(modelDir);
  });

  const options = (outDir: string, extra: Partial<KtoOptions> = {}): KtoOptions => ({
    modelDir,
    data: { text: toJsonl(syntheticKto(80)), source: 'kto.jsonl' },
    outDir,
    steps: 30,
    lr: KTO_DEFAULTS.lr,
    batchSize: 8,
    heldout: 0.25,
    seed: 1,
    threads: 1,
    ...extra,
  });

  it('pairs each prompt with the previous completion of its batch, and a lone last example joins the batch before', () => {
    const examples = parseKtoJsonl(ck, toJsonl(syntheticKto(9)), 'kto.jsonl', 256);
    expect(examples.map((e) => e.label)).toEqual([true, true, false, false, true, true, false, false, true]);
    const batches = ktoBatches(ck, examples, 4, 256);
    expect(batches.map((b) => b.examples.length)).toEqual([4, 5]);
    const [first] = batches;
    const text = (ids: number[]) => ck.tokenizer.decode(ids);
    for (let i = 0; i < 4; i++) {
      const kl = text(first.kl[i].ids);
      expect(kl).toContain(first.examples[i].prompt[0].content);
      expect(kl).toContain(first.examples[(i + 3) % 4].completion[0].content);
      // Only the completion is scored, in the matched and in the mismatched sequence alike.
      const start = first.kl[i].assistant.indexOf(true);
      expect(text(first.kl[i].ids.slice(0, start))).not.toContain('One day');
      expect(first.kl[i].assistant.slice(start).every(Boolean)).toBe(true);
    }
    expect(ktoBatches(ck, examples.slice(0, 1), 4, 256)[0].kl).toEqual([]);
  });

  it('raises held-out implied-reward separation, reports every step and writes a loadable checkpoint', async () => {
    const seen: KtoProgress[] = [];
    const t0 = Date.now();
    const r = await runKtoTraining(options(tmp(), { onProgress: (p) => void seen.push(p) }));
    const seconds = (Date.now() - t0) / 1000;
    console.log(
      `KTO 30 steps: held-out separation ${r.heldoutSeparationBefore} → ${r.heldoutSeparation.toFixed(3)}, margin ` +
        `${r.heldoutMarginBefore.toFixed(4)} → ${r.heldoutMarginAfter.toFixed(4)}, loss ${r.lossFirst.toFixed(4)} → ${r.lossLast.toFixed(4)}, ` +
        `kl ${seen[seen.length - 1].kl.toFixed(4)}, ${seconds.toFixed(1)} s`,
    );
    expect(seen.map((p) => p.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
    expect(seen.every((p) => p.steps === 30 && p.gradNorm > 0 && p.lr > 0 && Number.isFinite(p.loss) && p.kl >= 0)).toBe(true);
    // 60 training examples in batches of 8: seven of 8 and one of 4, each a whole batch per step.
    expect(new Set(seen.map((p) => p.desirable + p.undesirable))).toEqual(new Set([8, 4]));
    // Desirable completions gain likelihood relative to the reference, undesirable ones lose it.
    expect(seen[seen.length - 1].chosenReward).toBeGreaterThan(0);
    expect(seen[seen.length - 1].rejectedReward).toBeLessThan(0);
    expect(seen[0].loss).toBe(0.5); // policy = reference at step 1: every example's loss is 1 - σ(0)
    expect(seen[0].kl).toBe(0);
    expect(r).toMatchObject({ examples: 80, desirable: 40, undesirable: 40, heldoutExamples: 20, trainExamples: 60, steps: 30, resumedFromStep: 0 });
    expect(r.heldoutSeparationBefore).toBe(0.5);
    expect(r.heldoutMarginBefore).toBe(0);
    expect(r.heldoutSeparation).toBeGreaterThanOrEqual(0.85);
    expect(r.heldoutMarginAfter).toBeGreaterThan(0);
    expect(r.lossLast).toBeLessThan(r.lossFirst);
    expect(seconds).toBeLessThan(30);
    const out = await loadCheckpoint(r.outDir);
    expect(out.spec).toEqual(ck.spec);
    expect(out.numLabels).toBeNull();
  });

  /** A run stopped right after its checkpoint at step 3 and resumed, beside an uninterrupted one with the same options. */
  const stopAndResume = async (short: Partial<KtoOptions>) => {
    const whole = await runKtoTraining(options(tmp(), short));
    const out = tmp();
    const stop = new Error('stopped after the checkpoint');
    await expect(runKtoTraining(options(out, { ...short, onCheckpoint: () => { throw stop; } }))).rejects.toBe(stop);
    const resumed = await runKtoTraining(options(out, { ...short, resume: true }));
    expect(resumed.resumedFromStep).toBe(3);
    expect(resumed.lossFirst).toBe(whole.lossFirst);
    expect(resumed.lossLast).toBe(whole.lossLast);
    expect(resumed.heldoutSeparation).toBe(whole.heldoutSeparation);
    expect(resumed.heldoutMarginAfter).toBe(whole.heldoutMarginAfter);
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
    expect((await runKtoTraining(options(out, { ...short, undesirableWeight: 1.2, resume: true }))).resumedFromStep).toBe(0);
  });

  it('trains LoRA adapters on the frozen base (the reference): separation rises, only targeted projections move', async () => {
    const lora = { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'down_proj'] as ('q_proj' | 'v_proj' | 'down_proj')[] };
    const r = await runKtoTraining(options(tmp(), { lora, lr: 2e-3 }));
    expect(r.frozenParams).toBeGreaterThan(0);
    expect(r.trainableParams).toBeLessThan(r.frozenParams / 4);
    expect(r.heldoutSeparationBefore).toBe(0.5); // zero-initialised B: the policy starts as the reference
    expect(r.heldoutSeparation).toBeGreaterThanOrEqual(0.8);
    expect(r.lossLast).toBeLessThan(r.lossFirst);
    expect(changedTensors(ck.weights, (await loadCheckpoint(r.outDir)).weights)).toEqual(targetedTensors(ck.weights, lora.targets));
    const adapter = await readPeftAdapter(path.join(r.outDir, CHECKPOINT_ADAPTER_DIR));
    expect(adapter.config).toMatchObject({ rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'down_proj'], taskType: 'CAUSAL_LM' });
  });

  it('resumes a LoRA run from base + saved adapters to the same weights, bit for bit', async () => {
    await stopAndResume({ steps: 6, checkpointEvery: 3, lora: { rank: 4, targets: ['q_proj', 'v_proj'] }, lr: 2e-3 });
  });

  it('stops with a checkpoint when asked, and resumes from it', async () => {
    const out = tmp();
    let steps = 0;
    const stopped = runKtoTraining(options(out, { steps: 6, checkpointEvery: 0, onProgress: () => void steps++, shouldStop: () => steps >= 2 }));
    await expect(stopped).rejects.toMatchObject({ name: 'KtoStoppedError', step: 2 });
    expect((await runKtoTraining(options(out, { steps: 6, resume: true }))).resumedFromStep).toBe(2);
  });

  it("passes on TRL's weight advice when the weights do not balance the kinds", async () => {
    // 16 lines, 12 desirable: no held-out, so the advice is about exactly these counts.
    const all = syntheticKto(32);
    const lines = [...all.filter((e) => e.label).slice(0, 12), ...all.filter((e) => !e.label).slice(0, 4)];
    const warnings: string[] = [];
    await runKtoTraining(options(tmp(), { data: { text: toJsonl(lines), source: 'kto.jsonl' }, heldout: 0, steps: 1, onWarning: (m) => void warnings.push(m) }));
    expect(warnings).toEqual(['12 desirable and 4 undesirable examples: with these counts set either desirableWeight in [0.33, 0.44] or undesirableWeight in [2.26, 3] (not both)']);
  });

  it('refuses data without both kinds, malformed lines, other formats and a batch of one, saying why', async () => {
    const refuse = (text: string, extra: Partial<KtoOptions> = {}) => runKtoTraining(options(tmp(), { data: { text, source: 'bad.jsonl' }, steps: 1, ...extra }));
    const good = syntheticKto(8);
    await expect(refuse(toJsonl(good.filter((e) => e.label)))).rejects.toThrow(
      'bad.jsonl: no undesirable (label false) example among 4; KTO needs both desirable and undesirable examples',
    );
    await expect(refuse(toJsonl(good.filter((e) => !e.label)))).rejects.toThrow(/^bad\.jsonl: no desirable \(label true\) example among 4;/);
    await expect(refuse(toJsonl(good) + '{"prompt": [\n')).rejects.toThrow('bad.jsonl:9: not valid JSON');
    await expect(refuse(toJsonl([good[0], { ...good[1], label: 'yes' }]))).rejects.toThrow(/^bad\.jsonl:2: not a KTO line \(\{"prompt", "completion", "label"\}\): /);
    await expect(refuse(toJsonl(syntheticPreferences(4)))).rejects.toThrow(/^bad\.jsonl:1: not a KTO line/);
    await expect(refuse('\n\n')).rejects.toThrow('bad.jsonl: no KTO example with a completion to score');
    await expect(refuse(toJsonl(good), { batchSize: 1 })).rejects.toThrow(/batchSize must be an integer of at least 2/);
    await expect(refuse(toJsonl(good.slice(1, 3)), { heldout: 0.5 })).rejects.toThrow('bad.jsonl: 1 example(s) left to train on after holding out 1; KTO needs at least 2');
  });
});
