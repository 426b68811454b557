// The PPO critic under LoRA on the committed stories260K (started, as by default, from the policy with a zero value
// head): value-loss updates move the adapters and the head and leave every base tensor bit for bit, gradients and
// AdamW moments exist for the adapters and the head alone (a full critic's cover every weight), and a critic put back
// from its resume point (base + saved adapters + saved head) computes exactly what the saved one did, reading the head
// from the adapter alone (the merged checkpoint deleted) or, for an adapter written without one, from the checkpoint. The gradient
// itself is the LoRA path with a trainable value head that training.lora.spec.ts checks against central differences.
import { mkdtempSync, rmSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freeTrainableModel, getAdapterWeights, getFrozenWeights, getGrads, getWeights, trainableModelInfo, DEFAULT_OPTIMIZER, type TrainableModelHandle } from '@flywheel/kernels';
import { loadCheckpoint, readSafetensorsFile, writeSafetensorsFile, type Checkpoint } from '@flywheel/model';
import { CHECKPOINT_ADAPTER_DIR, PEFT_ADAPTER_WEIGHTS_FILE, saveResumePoint } from '@flywheel/train';
import { createCritic, criticUpdate, criticValues, VALUE_HEAD, type CriticOptions } from './ppo.critic';
import { packActions, type ActionBatch } from './rollout';

jest.setTimeout(60_000);

const MODEL = path.resolve(__dirname, '../../../models/stories260K');
const LORA = { rank: 4, targets: ['q_proj', 'v_proj'] as ('q_proj' | 'v_proj')[] };
const opt = { ...DEFAULT_OPTIMIZER, lr: 1e-2, weightDecay: 0 };

const bitsEqual = (a: Float32Array, b: Float32Array): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
const maxAbs = (t: Float32Array): number => t.reduce((m, x) => Math.max(m, Math.abs(x)), 0);

describe('the PPO critic with LoRA (stories260K)', () => {
  let ck: Checkpoint;
  let all: ActionBatch;
  let returns: Float64Array;
  const critics: TrainableModelHandle[] = [];
  const options = (lora: CriticOptions['lora']): CriticOptions => ({
    spec: ck.spec,
    init: () => new Map([...ck.weights, [VALUE_HEAD, new Float32Array(ck.spec.hiddenSize)]]),
    lora,
    seed: 5,
    threads: 2,
  });
  const critic = async (lora: CriticOptions['lora'], resumeDir: string | null = null): Promise<TrainableModelHandle> => {
    const c = await createCritic(options(lora), resumeDir);
    critics.push(c);
    return c;
  };
  /** Value-loss updates on the whole batch against fixed returns; the loss before each. */
  const train = async (c: TrainableModelHandle, updates: number): Promise<number[]> => {
    const losses: number[] = [];
    for (let i = 0; i < updates; i++) losses.push((await criticUpdate(c, all, { valuesOld: await criticValues(c, all), returns }, 0, opt)).loss);
    return losses;
  };

  beforeAll(async () => {
    ck = await loadCheckpoint(MODEL);
    const rollouts = ['dog', 'cat', 'bird'].map((a, i) => ({
      prompt: ck.tokenizer.applyChatTemplate([{ role: 'user', content: `Tell me a story about a ${a}.` }], { addGenerationPrompt: true }),
      response: ck.tokenizer.encode(['Once upon a time', 'The cat was happy', 'A bird sang'][i]),
    }));
    all = packActions(rollouts);
    returns = Float64Array.from(all.slots, (_, i) => Math.sin(i) + 0.5);
  });
  afterAll(() => critics.forEach(freeTrainableModel));

  it('moves the adapters and the value head and leaves the base bit for bit', async () => {
    const c = await critic(LORA);
    const losses = await train(c, 4);
    expect(losses[3]).toBeLessThan(losses[0]);
    const base = ck.weights;
    const frozen = getFrozenWeights(c);
    expect([...frozen.keys()].sort()).toEqual([...base.keys()].sort());
    for (const [name, t] of frozen) expect([name, bitsEqual(t, base.get(name)!)]).toEqual([name, true]);
    const adapters = getAdapterWeights(c);
    // B starts at zero and A takes its first gradient once B has moved: after 4 updates every matrix has learned.
    const fresh = getAdapterWeights(await critic(LORA));
    for (const [name, t] of adapters) expect([name, bitsEqual(t, fresh.get(name)!)]).toEqual([name, false]);
    for (const [name, t] of adapters) if (name.endsWith('lora_B.weight')) expect(maxAbs(t)).toBeGreaterThan(0);
    expect(maxAbs(getWeights(c).get(VALUE_HEAD)!)).toBeGreaterThan(0);
    expect([...getGrads(c).keys()].sort()).toEqual([...adapters.keys(), VALUE_HEAD].sort());
  });

  it('holds gradients and moments for the adapters and the head only', async () => {
    const lora = await critic(LORA);
    const full = await critic(null);
    await train(lora, 1);
    await train(full, 1);
    const l = trainableModelInfo(lora);
    const f = trainableModelInfo(full);
    expect(l.numParams).toBe([...getAdapterWeights(lora).values()].reduce((n, t) => n + t.length, 0) + ck.spec.hiddenSize);
    expect(l.allocatedBytes).toMatchObject({ grads: 4 * l.numParams, moments: 8 * l.numParams });
    expect(f.allocatedBytes).toMatchObject({ grads: 4 * f.numParams, moments: 8 * f.numParams });
    expect(l.frozenParams).toBe(f.numParams - ck.spec.hiddenSize); // the base, without the head

  });

  // Saves a trained critic's resume point, lets `damage` alter the folder, and checks the critic put back from it.
  const resumesBitForBit = async (damage: (dir: string) => Promise<void>): Promise<void> => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ppo-critic-'));
    try {
      const c = await critic(LORA);
      await train(c, 2);
      await saveResumePoint(c, { outDir: dir, modelDir: MODEL, spec: ck.spec, state: { rng: [], data: { epoch: 0, index: 0 }, optimizer: {} } });
      await damage(dir);
      const back = await critic(LORA, dir);
      const saved = getWeights(c);
      const restored = getWeights(back);
      expect([...restored.keys()].sort()).toEqual([...saved.keys()].sort());
      for (const [name, t] of saved) expect([name, bitsEqual(restored.get(name)!, t)]).toEqual([name, true]);
      const frozen = getFrozenWeights(back);
      for (const [name, t] of ck.weights) expect([name, bitsEqual(frozen.get(name)!, t)]).toEqual([name, true]);
      const v = await criticValues(c, all);
      expect(Buffer.from((await criticValues(back, all)).buffer).equals(Buffer.from(v.buffer))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it('resumes from its base plus the saved adapter, which carries the value head, bit for bit (no merged checkpoint read)', async () => {
    await resumesBitForBit(async (dir) => unlinkSync(path.join(dir, 'model.safetensors')));
  });

  it('resumes an adapter written without the head (before adapters carried it) with the head from the saved checkpoint', async () => {
    await resumesBitForBit(async (dir) => {
      const file = path.join(dir, CHECKPOINT_ADAPTER_DIR, PEFT_ADAPTER_WEIGHTS_FILE);
      const tensors = [...(await readSafetensorsFile(file))].filter(([name]) => !name.endsWith('score.weight'));
      expect(tensors.length).toBeGreaterThan(0);
      await writeSafetensorsFile(file, tensors.map(([name, t]) => ({ name, shape: t.shape, data: t.data })));
    });
  });
});
