/**
 * Q8_0 serving end to end: a Q8_0 GGUF reaches the engine as its blocks (never widened), its logits agree with the
 * f32 engine over the same file widened, `dtype` unset serves it as q8_0, and stories260K quantized on load keeps
 * the f32 engine's greedy continuation of the golden prompt (up to near-ties). The tolerances are measured figures
 * with headroom, stated beside each check. Runs on committed fixtures only (no ../shared).
 */
import * as path from 'node:path';
import {
  createKvCache,
  createModel,
  forward,
  freeCache,
  freeModel,
  type ModelSpec,
  type ServingWeightMap,
  type WeightDtype,
} from '@flywheel/kernels';
import { createNativeEngine } from './engine';
import { DEFAULT_SAMPLING } from './engine/engine';
import type { TokenEvent } from './engine/engine.types';
import { STORIES_GOLDEN_IDS, STORIES_PROMPT_IDS } from './engine/testing/stories260k.fixture';
import { dequantizeQ8_0, loadCheckpoint, loadModelWeights, type LoadedWeights } from './loading';
import { caseLogits, committedModelDir, FIXTURES_DIR, readGolden } from './loading/model-files.testing';

const Q8_GGUF = path.join(FIXTURES_DIR, 'tiny-gqa-q8_0.gguf');

/** One model and cache; `step` runs a prefill or decode chunk of one sequence and returns its logits (rows, vocab). */
function session(spec: ModelSpec, weights: ServingWeightMap, dtype: WeightDtype, maxTokens: number) {
  const model = createModel(spec, weights, { dtype, threads: 2 });
  const blocks = Math.ceil(maxTokens / 16);
  const cache = createKvCache(model, blocks, 16);
  let pos = 0;
  return {
    async step(tokens: number[]): Promise<Float32Array> {
      const T = tokens.length;
      const logits = await forward(model, cache, {
        tokens: Int32Array.from(tokens),
        positions: Int32Array.from(tokens, (_, i) => pos + i),
        seqIndex: new Int32Array(T),
        blockTables: Int32Array.from({ length: blocks }, (_, i) => i),
        maxBlocksPerSeq: blocks,
        logitRows: Int32Array.from(tokens, (_, i) => i),
      });
      pos += T;
      return logits;
    },
    free(): void {
      freeCache(cache);
      freeModel(model);
    },
  };
}

function std(a: Float32Array): number {
  let s = 0;
  let s2 = 0;
  for (const v of a) {
    s += v;
    s2 += v * v;
  }
  const m = s / a.length;
  return Math.sqrt(s2 / a.length - m * m);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

/** Top-1 id of a row and its margin over the runner-up. */
function top2(row: Float32Array): { id: number; margin: number } {
  let a = -Infinity;
  let b = -Infinity;
  let id = -1;
  for (let i = 0; i < row.length; i++) {
    if (row[i] > a) [b, a, id] = [a, row[i], i];
    else if (row[i] > b) b = row[i];
  }
  return { id, margin: a - b };
}

describe('Q8_0 serving', () => {
  let q8: LoadedWeights;
  beforeAll(async () => {
    q8 = await loadModelWeights(Q8_GGUF);
  });

  it('hands a Q8_0 GGUF to the engine as its blocks; training still reads f32', () => {
    expect(q8.sourceDtype).toBe('q8_0');
    let matrices = 0;
    for (const [name, t] of q8.servingWeights) {
      const widened = q8.weights.get(name);
      if (t instanceof Float32Array) {
        expect(name).toMatch(/norm|bias/);
        continue;
      }
      matrices++;
      expect(t.dtype).toBe('q8_0');
      expect(t.blocks.length).toBe((widened!.length / 32) * 34);
      // The f32 view is exactly the blocks dequantized (q/k rows unpermuted the same way in both).
      expect(dequantizeQ8_0(t.blocks, widened!.length)).toEqual(widened);
    }
    expect(matrices).toBe(2 * 7 + 2); // 7 per layer, embedding, untied head
  });

  it('its logits agree with the f32 engine over the same file widened (max |diff| < 0.1 of the logit std)', async () => {
    const golden = readGolden('tiny-gqa-q8_0');
    let worst = 0;
    for (const c of golden.cases) {
      const native = session(q8.spec, q8.servingWeights, 'q8_0', c.tokens.length);
      const widened = session(q8.spec, q8.weights, 'f32', c.tokens.length);
      const a = await native.step(c.tokens);
      const b = await widened.step(c.tokens);
      native.free();
      widened.free();
      // The widened engine is the float64 golden's twin (model.golden.spec holds it to 1e-4); Q8_0 differs from it
      // only by rounding activations to int8 per 32-block.
      expect(maxAbsDiff(b, caseLogits(golden, c)) / std(b)).toBeLessThan(1e-4);
      worst = Math.max(worst, maxAbsDiff(a, b) / std(b));
    }
    // Measured: 0.066 on this fixture, AVX2 and portable alike (hidden 32: one activation block per row, so one
    // outlier sets the int8 step of the whole row).
    expect(worst).toBeLessThan(0.1);
  });

  it('quantizing the widened file on load gives its blocks back: the same logits bit for bit', async () => {
    // llama.cpp's quantizer leaves a 127 in every nonzero block, so d = f16(max/127) survives the round trip.
    const c = readGolden('tiny-gqa-q8_0').cases[2];
    const blocks = session(q8.spec, q8.servingWeights, 'q8_0', c.tokens.length);
    const requantized = session(q8.spec, q8.weights, 'q8_0', c.tokens.length);
    try {
      expect(await requantized.step(c.tokens)).toEqual(await blocks.step(c.tokens));
    } finally {
      blocks.free();
      requantized.free();
    }
  });

  it('serves a Q8_0 GGUF as q8_0 when no dtype is asked for, f32 checkpoints as f32', async () => {
    const stories = await loadCheckpoint(committedModelDir());
    // stories260K's tokenizer and generation defaults over the tiny Q8_0 weights: only the dtype choice is under test.
    const tiny = { ...stories, spec: q8.spec, weights: q8.weights, servingWeights: q8.servingWeights, sourceDtype: q8.sourceDtype };
    const served = createNativeEngine(tiny, { numBlocks: 8, threads: 1 });
    const plain = createNativeEngine(stories, { numBlocks: 8, threads: 1 });
    const asked = createNativeEngine(tiny, { numBlocks: 8, threads: 1, dtype: 'bf16' });
    try {
      expect([served.dtype, plain.dtype, asked.dtype]).toEqual(['q8_0', 'f32', 'bf16']);
      const ids: number[] = [];
      const events: AsyncIterable<TokenEvent> = served.engine.generate({
        requestId: 'q8',
        promptTokenIds: [3, 17, 99],
        maxTokens: 4,
        n: 1,
        stop: [],
        stopTokenIds: [],
        sampling: { ...DEFAULT_SAMPLING, temperature: 0 },
      });
      for await (const e of events) ids.push(...e.tokenIds);
      expect(ids).toHaveLength(4);
    } finally {
      await Promise.all([served.close(), plain.close(), asked.close()]);
    }
  });

  it('stories260K quantized on load keeps the f32 greedy continuation of the golden prompt up to near-ties', async () => {
    const stories = await loadModelWeights(committedModelDir());
    const n = STORIES_GOLDEN_IDS.length;
    const f32 = session(stories.spec, stories.servingWeights, 'f32', STORIES_PROMPT_IDS.length + n);
    const q8s = session(stories.spec, stories.servingWeights, 'q8_0', STORIES_PROMPT_IDS.length + n);
    try {
      // Teacher-forced on the golden ids: both engines see the same context at every step.
      const V = stories.spec.vocabSize;
      let a = (await f32.step(STORIES_PROMPT_IDS)).subarray((STORIES_PROMPT_IDS.length - 1) * V);
      let b = (await q8s.step(STORIES_PROMPT_IDS)).subarray((STORIES_PROMPT_IDS.length - 1) * V);
      let worst = 0;
      const disagreements: { step: number; f32Margin: number }[] = [];
      for (let i = 0; i < n; i++) {
        const ta = top2(a);
        const tb = top2(b);
        expect(ta.id).toBe(STORIES_GOLDEN_IDS[i]); // f32 replays the golden ids
        if (tb.id !== ta.id) disagreements.push({ step: i, f32Margin: ta.margin });
        worst = Math.max(worst, maxAbsDiff(a, b) / std(a));
        a = await f32.step([STORIES_GOLDEN_IDS[i]]);
        b = await q8s.step([STORIES_GOLDEN_IDS[i]]);
      }
      // Measured: the same argmax at all 64 steps (no disagreement); max |diff| 0.117 of the logit std (weights and
      // activations both rounded). A disagreement is allowed only at a near-tie of the f32 logits.
      for (const d of disagreements) expect(d.f32Margin).toBeLessThan(0.05);
      expect(disagreements.length).toBeLessThanOrEqual(2);
      expect(worst).toBeLessThan(0.2);
    } finally {
      f32.free();
      q8s.free();
    }
  });
});
