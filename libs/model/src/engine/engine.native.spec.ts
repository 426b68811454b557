/**
 * Integration of the engine with the real pieces: loadCheckpoint (loading/) and the native kernels
 * (@flywheel/kernels) on the committed models/stories260K. Never skipped: a missing model or unbuilt addon
 * fails the suite (`npm test` builds the addon first).
 */
import { loadCheckpoint, type Checkpoint } from '../loading';
import { committedModelDir } from '../loading/model-files.testing';
import { DEFAULT_SAMPLING } from './engine';
import { createNativeEngine } from './engine.factory';
import type { GenerateRequest, StepBatch, TokenEvent } from './engine.types';
import { NativeStepRunner } from './native-runner';
import { ReferenceRunner } from './reference-runner';
import { STORIES_GOLDEN_IDS, STORIES_PROMPT_IDS } from './testing/stories260k.fixture';

async function collectIds(stream: AsyncIterable<TokenEvent>): Promise<{ ids: number[]; text: string }> {
  const out = { ids: [] as number[], text: '' };
  for await (const e of stream) {
    out.ids.push(...e.tokenIds);
    out.text += e.textDelta;
  }
  return out;
}

const greedy = (requestId: string, prompt: readonly number[], maxTokens = 64): GenerateRequest => ({
  requestId,
  promptTokenIds: prompt,
  maxTokens,
  n: 1,
  stop: [],
  stopTokenIds: [],
  sampling: { ...DEFAULT_SAMPLING, temperature: 0 },
});

describe('Engine over the native kernels (stories260K)', () => {
  let ckpt: Checkpoint;
  beforeAll(async () => {
    ckpt = await loadCheckpoint(committedModelDir());
  });

  it('native step logits match the TypeScript reference on a mixed prefill + decode batch', async () => {
    const blocks = 8;
    const native = new NativeStepRunner(ckpt.spec, ckpt.weights, { numBlocks: blocks, blockSize: 4, dtype: 'f32', threads: 1 });
    const reference = new ReferenceRunner(ckpt.spec, ckpt.weights, blocks, 4);
    try {
      // Seq 0 prefills 6 tokens in blocks [5, 2]; seq 1 prefills 3 tokens in [7]; then both decode one token.
      const steps: StepBatch[] = [
        {
          tokens: Int32Array.from([1, 403, 407, 261, 378, 432, 1, 338, 401]),
          positions: Int32Array.from([0, 1, 2, 3, 4, 5, 0, 1, 2]),
          seqIndex: Int32Array.from([0, 0, 0, 0, 0, 0, 1, 1, 1]),
          blockTables: Int32Array.from([5, 2, 7, -1]),
          maxBlocksPerSeq: 2,
          logitRows: Int32Array.from([3, 5, 8]),
        },
        {
          tokens: Int32Array.from([383, 396]),
          positions: Int32Array.from([6, 3]),
          seqIndex: Int32Array.from([0, 1]),
          blockTables: Int32Array.from([5, 2, 7, 0]),
          maxBlocksPerSeq: 2,
          logitRows: Int32Array.from([0, 1]),
        },
      ];
      for (const batch of steps) {
        const a = await native.run(batch);
        const b = await reference.run(batch);
        expect(a.length).toBe(b.length);
        let maxDiff = 0;
        for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
        expect(maxDiff).toBeLessThan(1e-3);
      }
    } finally {
      native.dispose();
    }
  });

  it('generates the golden greedy ids and text through loadCheckpoint + native runner', async () => {
    expect(ckpt.tokenizer.encode('Once upon a time')).toEqual(STORIES_PROMPT_IDS);
    const { engine, close } = createNativeEngine(ckpt, { numBlocks: 64, threads: 1 });
    try {
      const out = await collectIds(engine.generate(greedy('golden', STORIES_PROMPT_IDS)));
      expect(out.ids).toEqual(STORIES_GOLDEN_IDS);
      expect(out.text).toBe(ckpt.tokenizer.decode([...STORIES_PROMPT_IDS, ...out.ids], { skipSpecialTokens: true }).slice('Once upon a time'.length));
    } finally {
      await close();
    }
  });

  it('keeps the golden ids in a batch under a tiny KV pool (preemption, prefix hits, n > 1)', async () => {
    const { engine, close } = createNativeEngine(ckpt, { numBlocks: 10, threads: 1, engine: { maxBatchTokens: 32, maxSeqs: 8 } });
    try {
      const runs = [
        collectIds(engine.generate(greedy('a', STORIES_PROMPT_IDS))),
        collectIds(engine.generate({ ...greedy('b', [1, 432, 383, 286]), sampling: { ...DEFAULT_SAMPLING, temperature: 1, seed: 3 }, n: 2 })),
        collectIds(engine.generate(greedy('c', STORIES_PROMPT_IDS))),
        collectIds(engine.generate(greedy('d', [...STORIES_PROMPT_IDS, ...STORIES_GOLDEN_IDS.slice(0, 40)], 24))),
      ];
      const [a, , c, d] = await Promise.all(runs);
      expect(a!.ids).toEqual(STORIES_GOLDEN_IDS);
      expect(c!.ids).toEqual(STORIES_GOLDEN_IDS);
      expect(d!.ids).toEqual(STORIES_GOLDEN_IDS.slice(40, 64));
      expect(engine.stats().preemptions).toBeGreaterThan(0);
      expect(engine.stats().kvUsage).toBe(0);
    } finally {
      await close();
    }
  });
});
