// Gemma reward models (Gemma2ForSequenceClassification, Gemma3TextForSequenceClassification) through the real loader,
// the reward service's scorer and the trainable path, against the float64 torch reference
// (`scripts/reference/gemma_reference.py --cls` → test/fixtures/tiny-gemma{2,3}-rm/ and golden/tiny-gemma{2,3}-rm.*):
// scores to 1e-4 relative, as one right-padded batch and alone; the gradients of sum(coef * score) over every parameter;
// and a reward export (writeHfCheckpoint, as the reward trainer writes one) that reloads as the same classifier.
// The score is never soft-capped (transformers' classifier reads the base model's hidden states).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { createTrainableModel, freeTrainableModel, getGrads, kernelsReference, scoreStep } from '@flywheel/kernels';
import { z } from 'zod';

import { loadCheckpoint, readSafetensorsFile, writeHfCheckpoint, type Checkpoint } from '../loading';
import { FIXTURES_DIR } from '../loading/model-files.testing';
import { createRewardScorer, packScoreBatch, rewardInputIds } from './reward.scoring';

const goldenSchema = z.object({
  checkpoint: z.string(),
  cases: z.array(z.object({ name: z.string(), tokens: z.array(z.int().nonnegative()), score: z.number() })),
  scoreCoef: z.array(z.number()),
  dataFile: z.string(),
  numParams: z.int().positive(),
  tensors: z.array(z.object({ name: z.string(), shape: z.array(z.int()), size: z.int().positive() })),
});
type RewardGolden = z.infer<typeof goldenSchema>;

function readRewardGolden(name: string): { golden: RewardGolden; grads: Map<string, Float32Array> } {
  const dir = path.join(FIXTURES_DIR, 'golden');
  const golden = goldenSchema.parse(JSON.parse(readFileSync(path.join(dir, `${name}.json`), 'utf8')));
  const bytes = readFileSync(path.join(dir, golden.dataFile));
  const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  expect(all.length).toBe(golden.numParams);
  const grads = new Map<string, Float32Array>();
  let offset = 0;
  for (const t of golden.tensors) {
    grads.set(t.name, all.subarray(offset, offset + t.size));
    offset += t.size;
  }
  return { golden, grads };
}

/** The text whose tokens are `ids` (the fixtures' tokenizer has one character per token). */
function textOf(ck: Checkpoint, ids: readonly number[]): string {
  return ids.map((id) => ck.tokenizer.idToToken(id) ?? '').join('');
}

const THREADS = { threads: 2 };

describe.each([
  ['tiny-gemma2-rm', 'Gemma2ForSequenceClassification'],
  ['tiny-gemma3-rm', 'Gemma3TextForSequenceClassification'],
])('%s against the float64 torch reference', (name, architecture) => {
  const dir = path.join(FIXTURES_DIR, name);
  const { golden, grads } = readRewardGolden(name);
  const want = golden.cases.map((c) => c.score);
  let ck: Checkpoint;
  beforeAll(async () => {
    ck = await loadCheckpoint(dir);
  });

  it('loads as a one-label reward model with Gemma\'s spec (score head, no lm_head)', () => {
    expect(ck.architecture).toBe(architecture);
    expect(ck.numLabels).toBe(1);
    expect(ck.weights.has('score.weight')).toBe(true);
    expect(ck.weights.has('lm_head.weight')).toBe(false);
    expect(ck.spec).toMatchObject({ hiddenAct: 'gelu_tanh', sandwichNorms: true, normWeightOffset: true, slidingWindow: 4, slidingLayers: [0] });
    // Gemma 2's final soft cap stays in the spec for LM logits; the score below matches only uncapped.
    if (name === 'tiny-gemma2-rm') expect(ck.spec).toMatchObject({ attnSoftcap: 2, finalSoftcap: 3 });
    else expect(ck.spec).toMatchObject({ qkNorm: true, ropeLocalTheta: 10000, ropeTheta: 1000000 });
  });

  it('scores through the reward service\'s scorer to 1e-4, as one padded batch and each alone', async () => {
    const pairs = golden.cases.map((c) => {
      const text = textOf(ck, c.tokens);
      const cut = Math.floor(text.length / 2);
      return { prompt: text.slice(0, cut), response: text.slice(cut) };
    });
    pairs.forEach((p, i) => expect(rewardInputIds(ck, p.prompt, p.response, ck.spec.maxPositionEmbeddings)).toEqual(golden.cases[i].tokens));
    const scorer = createRewardScorer(ck, THREADS);
    try {
      const got = await scorer.score(pairs);
      expect(kernelsReference.relError(got, want)).toBeLessThan(1e-4);
      for (let i = 0; i < pairs.length; i++) {
        const [alone] = await scorer.score([pairs[i]]);
        expect(Math.abs(alone - want[i]) / Math.max(...want.map(Math.abs))).toBeLessThan(1e-4);
      }
    } finally {
      scorer.free();
    }
  });

  it('trains: the gradients of sum(coef * score) over every parameter match to 1e-4 per tensor', async () => {
    const model = createTrainableModel(ck.spec, ck.weights, { ...THREADS, numLabels: 1 });
    try {
      const batch = packScoreBatch(golden.cases.map((c) => c.tokens));
      const scores = await scoreStep(model, batch, Float32Array.from(golden.scoreCoef));
      expect(kernelsReference.relError(scores, want)).toBeLessThan(1e-4);
      const got = getGrads(model);
      expect([...got.keys()].sort()).toEqual([...grads.keys()].sort());
      for (const [tensor, ref] of grads) expect({ tensor, err: kernelsReference.relError(got.get(tensor)!, ref) < 1e-4 }).toEqual({ tensor, err: true });
    } finally {
      freeTrainableModel(model);
    }
  });

  it('writes a reward export that reloads as the same classifier: config, weights bit for bit, scores', async () => {
    const out = mkdtempSync(path.join(tmpdir(), `${name}-`));
    try {
      const baseConfig = z.record(z.string(), z.unknown()).parse(JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')));
      await writeHfCheckpoint(out, { spec: ck.spec, weights: ck.weights, scoreLabels: 1, baseConfig, tokenizerDir: dir });
      const written = z.record(z.string(), z.unknown()).parse(JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')));
      for (const key of ['architectures', 'model_type', 'num_labels', 'layer_types', 'sliding_window', 'query_pre_attn_scalar', 'final_logit_softcapping', 'attn_logit_softcapping']) {
        expect({ key, value: written[key] }).toEqual({ key, value: key === 'num_labels' ? 1 : baseConfig[key] });
      }
      // The file holds the fixture's tensors as stored (Gemma's w, not the engine's 1 + w), and reloads to the same map.
      const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
      const source = await readSafetensorsFile(path.join(dir, 'model.safetensors'));
      const file = await readSafetensorsFile(path.join(out, 'model.safetensors'));
      expect([...file.keys()].sort()).toEqual([...source.keys()].sort());
      for (const [tensor, t] of source) expect({ tensor, same: bytes(file.get(tensor)!.data).equals(bytes(t.data)) }).toEqual({ tensor, same: true });
      const stored = await loadCheckpoint(out);
      expect(stored.architecture).toBe(architecture);
      for (const [tensor, data] of ck.weights) expect({ tensor, same: bytes(stored.weights.get(tensor)!).equals(bytes(data)) }).toEqual({ tensor, same: true });
      const scorer = createRewardScorer(stored, THREADS);
      try {
        const got = await scorer.score(golden.cases.map((c) => ({ prompt: textOf(stored, c.tokens), response: '' })));
        expect(kernelsReference.relError(got, want)).toBeLessThan(1e-4);
      } finally {
        scorer.free();
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });
});
