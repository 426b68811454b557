/**
 * The KV cache in IEEE half (FLYWHEEL_KV_DTYPE=f16, the policy service's default): half the bytes per token, logits
 * within a measured bound of the float64 goldens (K and V rounded to 11 significant bits are the only difference
 * from the f32 cache, which matches them to 1e-4), stories260K's 64 golden greedy ids unchanged, and prefix-cache
 * block copies that keep the halves as they are. Committed fixtures only.
 */
import * as path from 'node:path';
import { copyBlocks, createKvCache, createModel, forward, freeCache, freeModel, kvCacheInfo, type KvDtype, type ModelSpec, type WeightMap } from '@flywheel/kernels';
import { createNativeEngine } from './engine';
import { DEFAULT_SAMPLING } from './engine/engine';
import { STORIES_GOLDEN_IDS, STORIES_PROMPT_IDS } from './engine/testing/stories260k.fixture';
import { loadCheckpoint, loadModelWeights } from './loading';
import { caseLogits, committedModelDir, FIXTURES_DIR, readGolden } from './loading/model-files.testing';

/** Logits of every position of `tokens` in one prefill through a cache of `kv` storage. */
async function prefill(spec: ModelSpec, weights: WeightMap, tokens: number[], kv: KvDtype): Promise<Float32Array> {
  const model = createModel(spec, weights, { dtype: 'f32', threads: 2 });
  const blocks = Math.ceil(tokens.length / 16);
  const cache = createKvCache(model, blocks + 2, 16, kv);
  try {
    return await forward(model, cache, {
      tokens: Int32Array.from(tokens),
      positions: Int32Array.from(tokens, (_, i) => i),
      seqIndex: new Int32Array(tokens.length),
      blockTables: Int32Array.from({ length: blocks }, (_, i) => blocks + 1 - i),
      maxBlocksPerSeq: blocks,
      logitRows: Int32Array.from(tokens, (_, i) => i),
    });
  } finally {
    freeCache(cache);
    freeModel(model);
  }
}

function relError(got: Float32Array, want: Float32Array): number {
  let d = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    d = Math.max(d, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return d / scale;
}

describe('KV cache in f16', () => {
  it.each(['tiny-gqa', 'tiny-qwen3', 'stories260K-hf'])('%s: logits within 2e-3 of the float64 golden (f32 cache: 1e-4)', async (name) => {
    const golden = readGolden(name);
    const loaded = await loadModelWeights(name === 'stories260K-hf' ? committedModelDir() : path.join(FIXTURES_DIR, name));
    let worst = 0;
    for (const c of golden.cases) {
      const want = caseLogits(golden, c);
      const f16 = await prefill(loaded.spec, loaded.weights, c.tokens, 'f16');
      const f32 = await prefill(loaded.spec, loaded.weights, c.tokens, 'f32');
      expect(relError(f32, want)).toBeLessThan(1e-4);
      worst = Math.max(worst, relError(f16, want));
    }
    // Measured (AVX2 and portable alike): 7.4e-4 tiny-gqa, 2.8e-4 tiny-qwen3, 7.0e-4 stories260K; nonzero, so the
    // halves are really used.
    expect(worst).toBeLessThan(2e-3);
    expect(worst).toBeGreaterThan(0);
  });

  it('halves the bytes per token, and the engine serves stories260K\'s golden greedy ids with it', async () => {
    const ck = await loadCheckpoint(committedModelDir());
    const model = createModel(ck.spec, ck.weights, { dtype: 'f32', threads: 1 });
    const [a, b] = [createKvCache(model, 4, 16, 'f32'), createKvCache(model, 4, 16, 'f16')];
    // 5 layers x (K + V) x 4 KV heads x head dim 8.
    expect([kvCacheInfo(a).bytesPerToken, kvCacheInfo(b).bytesPerToken]).toEqual([1280, 640]);
    freeCache(a);
    freeCache(b);
    freeModel(model);

    const served = createNativeEngine(ck, { numBlocks: 16, threads: 1, kvDtype: 'f16' });
    try {
      expect([served.kvDtype, served.kvBytesPerToken]).toEqual(['f16', 640]);
      const ids: number[] = [];
      const events = served.engine.generate({
        requestId: 'kv16',
        promptTokenIds: STORIES_PROMPT_IDS,
        maxTokens: STORIES_GOLDEN_IDS.length,
        n: 1,
        stop: [],
        stopTokenIds: [],
        sampling: { ...DEFAULT_SAMPLING, temperature: 0 },
      });
      for await (const e of events) ids.push(...e.tokenIds);
      expect(ids).toEqual(STORIES_GOLDEN_IDS);
    } finally {
      await served.close();
    }
  });

  it('copies half blocks as they are (copy-on-write of a shared prefix)', async () => {
    const loaded = await loadModelWeights(path.join(FIXTURES_DIR, 'tiny-gqa'));
    const model = createModel(loaded.spec, loaded.weights, { dtype: 'f32', threads: 1 });
    const cache = createKvCache(model, 4, 16, 'f16');
    try {
      const tokens = [3, 17, 99, 5, 8];
      const step = (table: number, toks: number[], start: number) =>
        forward(model, cache, {
          tokens: Int32Array.from(toks),
          positions: Int32Array.from(toks, (_, i) => start + i),
          seqIndex: new Int32Array(toks.length),
          blockTables: Int32Array.of(table),
          maxBlocksPerSeq: 1,
          logitRows: Int32Array.of(toks.length - 1),
        });
      await step(0, tokens.slice(0, 4), 0);
      copyBlocks(cache, [0], [2]);
      // The last token decoded on the copy sees the same keys as on the original.
      expect(await step(2, [tokens[4]], 4)).toEqual(await step(0, [tokens[4]], 4));
    } finally {
      freeCache(cache);
      freeModel(model);
    }
  });
});
