/**
 * runSft with LoRA on models/stories260K and test/fixtures/sft: held-out loss falls while the base stays frozen;
 * outDir holds merged plain weights that loadCheckpoint reads and that reproduce the adapted model's loss, plus the
 * PEFT adapter in `adapter/`; a LoRA run stopped at its step-4 checkpoint resumes to the same adapters, bit for bit.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTrainableModel, freeTrainableModel, getAdapterWeights, getFrozenWeights, trainStep, type TrainableModelHandle } from '@flywheel/kernels';
import { loadCheckpoint, type Checkpoint } from '@flywheel/model';
import { CHECKPOINT_ADAPTER_DIR, readPeftAdapter } from './peft-adapter.io';
import { loadLoraResume } from './resume-point';
import { buildSftExample } from './sft.examples';
import { runSft, type SftOptions } from './sft.trainer';

const root = path.resolve(__dirname, '../../..');
const modelDir = path.join(root, 'models', 'stories260K');
const text = readFileSync(path.join(root, 'test', 'fixtures', 'sft', 'stories.jsonl'), 'utf8');

/** Assistant-token loss of the first 8 conversations, one right-padded batch. */
async function fixedLoss(model: TrainableModelHandle, ck: Checkpoint): Promise<number> {
  const examples = text
    .trim()
    .split('\n')
    .slice(0, 8)
    .map((l) => buildSftExample(ck, (JSON.parse(l) as { messages: { role: string; content: string }[] }).messages));
  const T = Math.max(...examples.map((e) => e.ids.length)) - 1;
  const n = examples.length * T;
  const tokens = new Int32Array(n), mask = new Int32Array(n), targets = new Int32Array(n), weights = new Float32Array(n);
  examples.forEach((e, b) => {
    for (let t = 0; t < e.ids.length - 1; t++) {
      tokens[b * T + t] = e.ids[t];
      mask[b * T + t] = 1;
      targets[b * T + t] = e.ids[t + 1];
      weights[b * T + t] = e.assistant[t + 1] ? 1 : 0;
    }
  });
  return (await trainStep(model, { B: examples.length, T, tokens, mask }, { targets, weights }, { gradScale: 0 })).loss;
}

describe('runSft with LoRA', () => {
  const dirs: string[] = [];
  const tmp = (): string => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'sft-lora-spec-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  const lora = { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'o_proj', 'up_proj', 'down_proj'] as const };
  const options = (outDir: string, extra: Partial<SftOptions> = {}): SftOptions => ({
    modelDir,
    data: { text, source: 'stories.jsonl' },
    outDir,
    steps: 8,
    lr: 1e-2,
    batchSize: 4,
    heldout: 0.2,
    seed: 3,
    threads: 1,
    checkpointEvery: 4,
    lora: { ...lora, targets: [...lora.targets] },
    ...extra,
  });

  it('trains the adapters only and exports merged weights that reproduce the adapted model', async () => {
    const r = await runSft(options(tmp()));
    expect(r.heldoutLossAfter).toBeLessThan(r.heldoutLossBefore);
    expect(r.lora).toEqual({ rank: 4, alpha: 8, scale: 2, targets: [...lora.targets] });
    // stories260K: 5 layers, C 64, q/o 64x64, v 32x64, up 172x64, down 64x172; each adapter r*(in + out).
    expect(r.numParams).toBe(5 * 4 * (64 + 64 + (64 + 32) + (64 + 64) + (64 + 172) + (172 + 64)));

    const base = await loadCheckpoint(modelDir);
    expect(r.frozenParams).toBe([...base.weights.values()].reduce((n, t) => n + t.length, 0));
    const merged = await loadCheckpoint(r.outDir);
    expect(merged.spec).toEqual(base.spec);
    const changed = (name: string) => !merged.weights.get(name)!.every((x, i) => x === base.weights.get(name)![i]);
    expect(changed('model.layers.2.self_attn.q_proj.weight')).toBe(true);
    expect(changed('model.layers.2.mlp.down_proj.weight')).toBe(true);
    expect(changed('model.layers.2.self_attn.k_proj.weight')).toBe(false); // not a target
    expect(changed('model.layers.2.input_layernorm.weight')).toBe(false);
    expect(changed('model.embed_tokens.weight')).toBe(false);

    const adapter = await readPeftAdapter(path.join(r.outDir, CHECKPOINT_ADAPTER_DIR));
    expect(adapter.config).toEqual({ rank: 4, alpha: 8, targets: [...lora.targets], baseModel: modelDir, taskType: 'CAUSAL_LM' });
    const json = JSON.parse(readFileSync(path.join(r.outDir, CHECKPOINT_ADAPTER_DIR, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
    expect(json).toMatchObject({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 8, base_model_name_or_path: modelDir });
    expect(adapter.weights.get('base_model.model.model.layers.4.mlp.down_proj.lora_B.weight')!.length).toBe(64 * 4);
    expect(adapter.weights.size).toBe(5 * 5 * 2);

    // The adapted model (base + adapter, as a resume builds it) and a plain model of the merged weights agree.
    const adapted = createTrainableModel(base.spec, await loadLoraResume(base.weights, r.outDir), { lora: { ...lora, targets: [...lora.targets] }, threads: 1 });
    const plain = createTrainableModel(merged.spec, merged.weights, { threads: 1 });
    try {
      for (const [name, t] of getFrozenWeights(adapted)) expect(t.every((x, i) => x === base.weights.get(name)![i])).toBe(true);
      const a = await fixedLoss(adapted, base);
      const b = await fixedLoss(plain, base);
      expect(Math.abs(a - b) / a).toBeLessThan(1e-5);
    } finally {
      freeTrainableModel(adapted);
      freeTrainableModel(plain);
    }
  });

  it('resumes a stopped LoRA run to the same adapters, bit for bit', async () => {
    const whole = await runSft(options(tmp()));
    const out = tmp();
    const stop = new Error('stopped after the checkpoint');
    await expect(runSft(options(out, { onCheckpoint: () => { throw stop; } }))).rejects.toBe(stop);
    const resumed = await runSft(options(out, { resume: true }));
    expect(resumed.resumedFromStep).toBe(4);
    expect(resumed.heldoutLossAfter).toBe(whole.heldoutLossAfter);
    const a = (await readPeftAdapter(path.join(whole.outDir, CHECKPOINT_ADAPTER_DIR))).weights;
    const b = (await readPeftAdapter(path.join(resumed.outDir, CHECKPOINT_ADAPTER_DIR))).weights;
    for (const [name, w] of a) expect(Buffer.from(b.get(name)!.buffer).equals(Buffer.from(w.buffer))).toBe(true);
    // A full-weight run does not pick up the LoRA state in the same folder.
    expect((await runSft(options(out, { resume: true, lora: undefined, steps: 2, checkpointEvery: 0 }))).resumedFromStep).toBe(0);
  });

  it('refuses a model adapter of a different shape on resume', async () => {
    const ck = await loadCheckpoint(modelDir);
    const out = tmp();
    await runSft(options(out, { steps: 2, checkpointEvery: 0 }));
    const weights = await loadLoraResume(ck.weights, out);
    expect(() => createTrainableModel(ck.spec, weights, { lora: { rank: 4, targets: ['q_proj'] }, threads: 1 })).toThrow(/which lora/);
    const m = createTrainableModel(ck.spec, weights, { lora: { ...lora, targets: [...lora.targets] }, threads: 1 });
    expect(getAdapterWeights(m).size).toBe(50);
    freeTrainableModel(m);
  });
});
