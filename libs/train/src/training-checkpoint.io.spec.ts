/**
 * The files a training run writes: an exact resume of native training from a written checkpoint and training state
 * (weights + optimizer moments + step + RNG + data position), and a trained checkpoint that keeps its source's config
 * fields and tokenizer files.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import {
  createTrainableModel,
  freeTrainableModel,
  getOptimizerState,
  getWeights,
  optimizerStep,
  setOptimizerState,
  trainStep,
  zeroGrad,
  DEFAULT_OPTIMIZER,
  type TrainableModelHandle,
} from '@flywheel/kernels';
import { loadModelWeights, writeHfCheckpoint } from '@flywheel/model';
import { readTrainingState, writeTrainedCheckpoint, writeTrainingState } from './training-checkpoint.io';

const FIXTURES_DIR = path.resolve(__dirname, '../../../test/fixtures');
const MODEL = path.resolve(__dirname, '../../../models/stories260K');

describe('training checkpoint files', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'train-ck-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('resumes native training exactly from the written weights and training state', async () => {
    const src = await loadModelWeights(path.join(FIXTURES_DIR, 'tiny-gqa'));
    const B = 2, T = 5;
    const tokens = Int32Array.from([5, 9, 17, 3, 99, 42, 7, 7, 0, 0]);
    const mask = Int32Array.from([1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
    const targets = Int32Array.from([9, 17, 3, 99, 0, 7, 7, 0, 0, 0]);
    const weights = Float32Array.from([1, 1, 1, 1, 0, 1, 1, 0, 0, 0]);
    const opt = { ...DEFAULT_OPTIMIZER, lr: 1e-2, warmupSteps: 1, totalSteps: 4 };
    const step = async (m: TrainableModelHandle) => {
      zeroGrad(m);
      await trainStep(m, { B, T, tokens, mask }, { targets, weights });
      return optimizerStep(m, opt);
    };
    const a = createTrainableModel(src.spec, src.weights, { threads: 1 });
    await step(a);
    await step(a);
    const ck = path.join(dir, 'ck');
    await writeHfCheckpoint(ck, { spec: src.spec, weights: getWeights(a) });
    const o = getOptimizerState(a);
    await writeTrainingState(ck, { step: o.step, m: o.m, v: o.v, rng: [12345], data: { epoch: 0, index: 4 }, optimizer: { ...opt } });
    await step(a);
    await step(a);

    const loaded = await loadModelWeights(ck);
    const st = await readTrainingState(ck);
    expect(st.step).toBe(2);
    expect(st.rng).toEqual([12345]);
    expect(st.data).toEqual({ epoch: 0, index: 4 });
    const b = createTrainableModel(loaded.spec, loaded.weights, { threads: 1 });
    setOptimizerState(b, st);
    await step(b);
    const last = await step(b);
    expect(last.step).toBe(4);
    const wa = getWeights(a);
    for (const [name, t] of getWeights(b)) expect(Array.from(t)).toEqual(Array.from(wa.get(name)!));
    freeTrainableModel(a);
    freeTrainableModel(b);
  });

  it('writes a trained checkpoint with its source config fields and tokenizer files', async () => {
    const src = await loadModelWeights(MODEL);
    const out = path.join(dir, 'out');
    await writeTrainedCheckpoint(out, { sourceDir: MODEL, spec: src.spec, weights: src.weights });
    const source = JSON.parse(readFileSync(path.join(MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;
    const written = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    for (const k of ['bos_token_id', 'eos_token_id', 'initializer_range']) expect(written[k]).toEqual(source[k]);
    expect(existsSync(path.join(out, 'tokenizer.json'))).toBe(true);
    const back = await loadModelWeights(out);
    for (const [name, t] of src.weights) expect(Array.from(back.weights.get(name)!)).toEqual(Array.from(t));
  });
});
