/**
 * Sliding-window attention through the whole engine on the committed tiny models (real loader, native kernels):
 * an all-sliding model (Mistral, window 4) gives back the KV blocks that left its window, so a sequence longer than
 * the whole KV pool generates, with the same greedy ids as under a large pool and the float64 reference's first ids;
 * a model that mixes sliding and full layers (Gemma 3) keeps every block.
 */
import * as path from 'node:path';
import { loadModelWeights, type LoadedWeights } from '../loading';
import { FIXTURES_DIR, readGolden } from '../loading/model-files.testing';
import { DEFAULT_SAMPLING, Engine } from './engine';
import type { TokenEvent } from './engine.types';
import { NativeStepRunner } from './native-runner';

const decoder = { decode: (ids: readonly number[]) => ids.map((i) => ` ${i}`).join('') };

async function greedyIds(loaded: LoadedWeights, prompt: number[], maxTokens: number, pool: { numBlocks: number; blockSize: number; maxBatchTokens: number }) {
  const runner = new NativeStepRunner(loaded.spec, loaded.weights, { numBlocks: pool.numBlocks, blockSize: pool.blockSize, dtype: 'f32', threads: 1 });
  const engine = new Engine({
    runner,
    decoder,
    config: { maxModelLen: loaded.spec.maxPositionEmbeddings, numBlocks: pool.numBlocks, blockSize: pool.blockSize, maxBatchTokens: pool.maxBatchTokens, maxSeqs: 1, eosTokenIds: [] },
  });
  const ids: number[] = [];
  let peakUsage = 0;
  try {
    const events: AsyncIterable<TokenEvent> = engine.generate({
      requestId: 'w',
      promptTokenIds: prompt,
      maxTokens,
      n: 1,
      stop: [],
      stopTokenIds: [],
      sampling: { ...DEFAULT_SAMPLING, temperature: 0 },
    });
    for await (const e of events) {
      ids.push(...e.tokenIds);
      peakUsage = Math.max(peakUsage, engine.stats().kvUsage);
    }
    return { ids, peakUsage, finalUsage: engine.stats().kvUsage, window: runner.attentionWindow };
  } finally {
    await engine.close();
    runner.dispose();
  }
}

describe('sliding-window attention in the engine', () => {
  it('an all-sliding model outgrows its KV pool and generates as with a large one', async () => {
    const loaded = await loadModelWeights(path.join(FIXTURES_DIR, 'tiny-mistral-swa'));
    expect(loaded.spec.slidingWindow).toBe(4);
    const golden = readGolden('tiny-mistral-swa');
    const c = golden.cases.find((x) => x.name === 'random-13')!;
    const total = loaded.spec.maxPositionEmbeddings - c.tokens.length; // 51 new tokens: 64 positions in all
    // 6 blocks of 2 hold 12 positions; the window (4) plus a 4-token step fits, so nothing refuses the request.
    const small = await greedyIds(loaded, c.tokens, total, { numBlocks: 6, blockSize: 2, maxBatchTokens: 4 });
    const large = await greedyIds(loaded, c.tokens, total, { numBlocks: 64, blockSize: 2, maxBatchTokens: 64 });
    expect(small.window).toBe(4);
    expect(small.ids).toHaveLength(total);
    expect(small.ids).toEqual(large.ids);
    expect(small.ids.slice(0, c.greedy!.length)).toEqual(c.greedy);
    expect(small.finalUsage).toBe(0);
    // Between steps a sequence holds the blocks of its next query's window and the one it writes into: at most
    // ceil(4 / 2) + 1 of 64, where the whole context would take 32.
    expect(Math.round(large.peakUsage * 64)).toBeLessThanOrEqual(3);
  });

  it('a model with full-attention layers keeps every block (Gemma 3: five sliding layers, one global)', async () => {
    const loaded = await loadModelWeights(path.join(FIXTURES_DIR, 'tiny-gemma3'));
    expect(loaded.spec.slidingLayers).toEqual([0, 1, 2, 3, 4]);
    const c = readGolden('tiny-gemma3').cases.find((x) => x.name === 'random-13')!;
    const r = await greedyIds(loaded, c.tokens, 8, { numBlocks: 16, blockSize: 2, maxBatchTokens: 16 });
    expect(r.window).toBeUndefined();
    expect(r.ids).toEqual(c.greedy);
    // Every computed position's block stays: 13 + 7 positions (the last sampled token is never run) in blocks of 2.
    expect(Math.round(r.peakUsage * 16)).toBeGreaterThanOrEqual(10);
  });
});
