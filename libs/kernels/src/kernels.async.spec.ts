// The addon's runtime behaviour: heavy calls run off the JavaScript thread (the event loop keeps serving while a
// big prefill runs, or while a model is packed), a KV cache holds memory only for the blocks written, the
// FLYWHEEL_NATIVE_PORTABLE switch, and the bandwidth probe.
import { spawnSync } from 'child_process';
import * as path from 'path';

import { createKvCache, createModel, createModelAsync, expectedWeightShapes, forward, freeCache, freeModel, measureTriadGbps, nativeInfo } from '.';
import { makeRng, randomWeights } from './kernels.reference';
import type { ModelSpec } from './kernels.types';
import { findRepoRoot, NATIVE_RELATIVE_PATH } from './native.loader';

jest.setTimeout(60_000);

/** A Llama shape with random weights: the sizes each case needs, the rest shared. */
const shape = (size: Pick<ModelSpec, 'vocabSize' | 'hiddenSize' | 'intermediateSize' | 'numLayers' | 'numHeads' | 'numKvHeads' | 'headDim'>): ModelSpec => ({
  ...size,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  ropeScaling: null,
  tieWordEmbeddings: true,
  attentionBias: false,
  maxPositionEmbeddings: 4096,
});

describe('native addon runtime', () => {
  it('keeps the event loop responsive while a long forward runs', async () => {
    const spec = shape({ vocabSize: 512, hiddenSize: 512, intermediateSize: 1536, numLayers: 12, numHeads: 8, numKvHeads: 2, headDim: 64 });
    const model = createModel(spec, randomWeights(spec, 5, expectedWeightShapes(spec)), { dtype: 'f32' });
    const cache = createKvCache(model, 32, 16);
    // ~12 layers x 512 tokens: long enough (hundreds of ms here) that a loaded machine still shows the timer
    // firing mid-forward, which only happens if the forward runs off the JavaScript thread.
    const T = 512;
    const rng = makeRng(8);
    const batch = {
      tokens: Int32Array.from({ length: T }, () => Math.floor(rng() * spec.vocabSize)),
      positions: Int32Array.from({ length: T }, (_, i) => i),
      seqIndex: new Int32Array(T),
      blockTables: Int32Array.from({ length: 32 }, (_, i) => 31 - i),
      maxBlocksPerSeq: 32,
      logitRows: Int32Array.from([T - 1]),
    };
    const started = Date.now();
    let done = 0;
    const running = forward(model, cache, batch).then(() => (done = Date.now()));
    const fired = await new Promise<number>((resolve) => setTimeout(() => resolve(Date.now()), 10));
    await running;
    // The timer fired while the forward was still running, and early in it. Both are relative to the forward's own
    // time: on a loaded 2-core CI machine a 10 ms timer can take 150 ms to fire, but a forward on the JavaScript
    // thread would hold it back until the very end.
    expect(done).toBeGreaterThan(fired);
    expect(fired - started).toBeLessThan(0.5 * (done - started));

    // Freeing handles while a step is in flight is safe: the step keeps the native objects alive.
    const inFlight = forward(model, cache, { ...batch, tokens: batch.tokens.slice(0, 64), positions: batch.positions.slice(0, 64), seqIndex: batch.seqIndex.slice(0, 64), logitRows: Int32Array.from([63]) });
    freeCache(cache);
    freeModel(model);
    const logits = await inFlight;
    expect(logits).toHaveLength(spec.vocabSize);
    expect(logits.every((x) => Number.isFinite(x))).toBe(true);
  });

  it('createModelAsync packs the weights off the JavaScript thread, into the same model as createModel', async () => {
    const spec = shape({ vocabSize: 2048, hiddenSize: 512, intermediateSize: 1536, numLayers: 8, numHeads: 8, numKvHeads: 2, headDim: 64 });
    const weights = randomWeights(spec, 9, expectedWeightShapes(spec));
    // Quantizing 10M weights to Q8_0 on creation: long enough to tell a worker thread from this one.
    const started = performance.now();
    const pending = createModelAsync(spec, weights, { dtype: 'q8_0' });
    const returned = performance.now();
    const asyncModel = await pending;
    const settled = performance.now();
    const syncModel = createModel(spec, weights, { dtype: 'q8_0' });
    // Had it packed on this thread, the call would only return when done.
    expect(returned - started).toBeLessThan(0.5 * (settled - started));
    const step = async (model: typeof syncModel) => {
      const cache = createKvCache(model, 4, 16);
      try {
        return await forward(model, cache, {
          tokens: Int32Array.from([5, 6, 7]),
          positions: Int32Array.from([0, 1, 2]),
          seqIndex: new Int32Array(3),
          blockTables: Int32Array.from([0]),
          maxBlocksPerSeq: 1,
          logitRows: Int32Array.from([2]),
        });
      } finally {
        freeCache(cache);
        freeModel(model);
      }
    };
    expect(Array.from(await step(asyncModel))).toEqual(Array.from(await step(syncModel)));
    await expect(createModelAsync(spec, new Map(), { dtype: 'f32' })).rejects.toThrow(/missing weight tensor/);
  });

  it('a 1 GiB KV cache holds no memory until steps write its blocks, and serves a step', async () => {
    const spec = shape({ vocabSize: 64, hiddenSize: 64, intermediateSize: 128, numLayers: 4, numHeads: 4, numKvHeads: 2, headDim: 16 });
    const model = createModel(spec, randomWeights(spec, 3, expectedWeightShapes(spec)), { dtype: 'f32' });
    // 2 (K, V) x 4 layers x 16 tokens x 2 heads x 16 dims x 4 bytes = 16 KiB a block.
    const numBlocks = (1 << 30) / (16 * 1024);
    const before = process.memoryUsage().rss;
    const cache = createKvCache(model, numBlocks, 16);
    const grown = process.memoryUsage().rss - before;
    try {
      // A zero-filled pool would be resident at once (and cost a page fault per 4 KiB on the creating thread).
      expect(grown).toBeLessThan(64 * 1024 * 1024);
      const logits = await forward(model, cache, {
        tokens: Int32Array.from([1, 2, 3]),
        positions: Int32Array.from([0, 1, 2]),
        seqIndex: new Int32Array(3),
        blockTables: Int32Array.from([numBlocks - 1]),
        maxBlocksPerSeq: 1,
        logitRows: Int32Array.from([2]),
      });
      expect(logits.every((x) => Number.isFinite(x))).toBe(true);
    } finally {
      freeCache(cache);
      freeModel(model);
    }
  });

  it('FLYWHEEL_NATIVE_PORTABLE=1 selects the portable kernels in a fresh process', () => {
    const root = findRepoRoot(__dirname);
    expect(root).not.toBeNull();
    const addon = path.join(root ?? '.', NATIVE_RELATIVE_PATH);
    const script = `process.stdout.write(require(${JSON.stringify(addon)}).info().simd)`;
    const portable = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, FLYWHEEL_NATIVE_PORTABLE: '1' } });
    expect(portable.stdout.toString()).toBe('portable');
    const auto = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, FLYWHEEL_NATIVE_PORTABLE: '' } });
    expect(auto.stdout.toString()).toBe(nativeInfo().avx2Supported ? 'avx2' : 'portable');
  });

  it('measures a plausible triad bandwidth', async () => {
    const gbps = await measureTriadGbps(16 * 1024 * 1024);
    expect(gbps).toBeGreaterThan(0.5);
    expect(gbps).toBeLessThan(10_000);
  });
});
