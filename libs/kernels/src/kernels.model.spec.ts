// Whole-model consistency of the native Llama step: against the naive reference forward, and against itself
// when the same prompt is fed as one prefill, token by token, in chunks, or batched with other sequences.
// Also the KV cache contract (slot writes, copy-on-write) and the TypeScript argument checks.
import {
  copyBlocks,
  createKvCache,
  createModel,
  expectedWeightShapes,
  forward,
  freeCache,
  freeModel,
  modelInfo,
  ops,
  readKvLayer,
  setModelStepMode,
  setModelThreads,
} from '.';
import { makeRng, randomWeights, refModelLogits, relError } from './kernels.reference';
import type { KvCacheHandle, ModelHandle, ModelSpec, StepBatch } from './kernels.types';

const spec: ModelSpec = {
  vocabSize: 67,
  hiddenSize: 48,
  intermediateSize: 72,
  numLayers: 2,
  numHeads: 6,
  numKvHeads: 2,
  headDim: 8,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  ropeScaling: null,
  tieWordEmbeddings: false,
  attentionBias: true,
  maxPositionEmbeddings: 256,
};
const weights = randomWeights(spec, 1234, expectedWeightShapes(spec));
const BLOCK = 4;
const NUM_BLOCKS = 64;
const MAX_BLOCKS = 12;

function prompt(seed: number, n: number): number[] {
  const rng = makeRng(seed);
  return Array.from({ length: n }, () => Math.floor(rng() * spec.vocabSize));
}

/** Shuffled distinct block ids, so sequences never sit in contiguous memory. */
function blockIds(seed: number, n: number): number[] {
  const rng = makeRng(seed);
  const ids = Array.from({ length: NUM_BLOCKS }, (_, i) => i);
  for (let i = ids.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [ids[i], ids[j]] = [ids[j], ids[i]];
  }
  return ids.slice(0, n);
}

interface Seq {
  tokens: number[];
  table: number[];
  start: number; // first position of this step's chunk
  len: number;
}

/** One step over several sequences' chunks; logits for every token of the step. */
async function step(model: ModelHandle, cache: KvCacheHandle, seqs: Seq[]): Promise<Float32Array[]> {
  const tokens: number[] = [];
  const positions: number[] = [];
  const seqIndex: number[] = [];
  const tables = new Int32Array(seqs.length * MAX_BLOCKS).fill(-1);
  seqs.forEach((s, i) => {
    s.table.forEach((b, j) => (tables[i * MAX_BLOCKS + j] = b));
    for (let p = s.start; p < s.start + s.len; p++) {
      tokens.push(s.tokens[p]);
      positions.push(p);
      seqIndex.push(i);
    }
  });
  const batch: StepBatch = {
    tokens: Int32Array.from(tokens),
    positions: Int32Array.from(positions),
    seqIndex: Int32Array.from(seqIndex),
    blockTables: tables,
    maxBlocksPerSeq: MAX_BLOCKS,
    logitRows: Int32Array.from(tokens.map((_, i) => i)),
  };
  const logits = await forward(model, cache, batch);
  return tokens.map((_, i) => logits.slice(i * spec.vocabSize, (i + 1) * spec.vocabSize));
}

/** Feeds one sequence in the given chunk sizes; returns logits of every position. */
async function feed(model: ModelHandle, cache: KvCacheHandle, tokens: number[], table: number[], chunks: number[]): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  let start = 0;
  for (const len of chunks) {
    out.push(...(await step(model, cache, [{ tokens, table, start, len }])));
    start += len;
  }
  return out;
}

function refRows(tokens: number[]): Float32Array[] {
  const ref = refModelLogits(spec, weights, tokens);
  return tokens.map((_, i) => ref.slice(i * spec.vocabSize, (i + 1) * spec.vocabSize));
}

describe('native Llama step (tiny GQA model, qkv bias, untied head)', () => {
  let model: ModelHandle;
  beforeAll(() => {
    model = createModel(spec, weights, { dtype: 'f32', threads: 2 });
  });
  afterAll(() => freeModel(model));

  const toks = prompt(1, 23);
  const table = blockIds(11, 6);
  const reference = refRows(toks);

  it('one prefill matches the naive reference forward', async () => {
    const cache = createKvCache(model, NUM_BLOCKS, BLOCK);
    const rows = await feed(model, cache, toks, table, [toks.length]);
    rows.forEach((r, i) => expect(relError(r, reference[i])).toBeLessThan(1e-4));
    freeCache(cache);
  });

  it('token-by-token decode gives the same logits as one prefill', async () => {
    const cache = createKvCache(model, NUM_BLOCKS, BLOCK);
    const rows = await feed(model, cache, toks, table, toks.map(() => 1));
    rows.forEach((r, i) => expect(relError(r, reference[i])).toBeLessThan(1e-4));
    freeCache(cache);
  });

  it('prefill in chunks (starting mid-block after cached positions) gives the same logits', async () => {
    const cache = createKvCache(model, NUM_BLOCKS, BLOCK);
    const rows = await feed(model, cache, toks, table, [3, 1, 6, 2, 9, 1, 1]);
    rows.forEach((r, i) => expect(relError(r, reference[i])).toBeLessThan(1e-4));
    freeCache(cache);
  });

  it('batched with other sequences (mixed decode tokens and prefill chunks) gives the same logits', async () => {
    const cache = createKvCache(model, NUM_BLOCKS, BLOCK);
    const a = { tokens: prompt(2, 14), table: blockIds(21, 4) };
    const b = { tokens: toks, table };
    const c = { tokens: prompt(3, 9), table: blockIds(31, 3) };
    // Distinct blocks per sequence.
    const used = new Set(b.table);
    a.table = a.table.map((x) => (used.has(x) ? 63 - x : x));
    a.table.forEach((x) => used.add(x));
    c.table = Array.from({ length: NUM_BLOCKS }, (_, i) => i).filter((i) => !used.has(i)).slice(0, 3);
    const got: Float32Array[][] = [[], [], []];
    const plan: Array<Array<[number, number, number]>> = [
      // (seq, start, len) per step
      [[0, 0, 5], [1, 0, 7]],
      [[0, 5, 1], [1, 7, 10], [2, 0, 4]],
      [[2, 4, 1], [0, 6, 8], [1, 17, 1]],
      [[1, 18, 5], [2, 5, 4]],
    ];
    const seqs = [a, b, c];
    for (const s of plan) {
      const rows = await step(model, cache, s.map(([i, start, len]) => ({ ...seqs[i], start, len })));
      let k = 0;
      for (const [i, , len] of s) for (let j = 0; j < len; j++) got[i].push(rows[k++]);
    }
    seqs.forEach((s, i) => {
      const ref = refRows(s.tokens);
      expect(got[i]).toHaveLength(s.tokens.length);
      got[i].forEach((r, p) => expect(relError(r, ref[p])).toBeLessThan(1e-4));
    });
    freeCache(cache);
  });

  it('gives the same logits after the thread pool is resized', async () => {
    setModelThreads(model, 1);
    const cache = createKvCache(model, NUM_BLOCKS, BLOCK);
    const rows = await feed(model, cache, toks, table, [5, 18]);
    rows.forEach((r, i) => expect(relError(r, reference[i])).toBeLessThan(1e-4));
    expect(modelInfo(model).threads).toBe(1);
    setModelThreads(model, 2);
    freeCache(cache);
  });

  it("runs a step on a worker thread with the pool or on the caller's thread alone, to the same bits", async () => {
    // This model's steps are all tiny, so `auto` runs them inline and single-threaded: `worker` is the path a real
    // model's steps take (the pool splits rows, heads and tokens), and it must not change a bit.
    const run = async (mode: 'worker' | 'inline') => {
      setModelStepMode(model, mode);
      const cache = createKvCache(model, NUM_BLOCKS, BLOCK);
      try {
        return await feed(model, cache, toks, table, [17, 1, 5]);
      } finally {
        freeCache(cache);
        setModelStepMode(model, 'auto');
      }
    };
    const pooled = await run('worker');
    const inline = await run('inline');
    pooled.forEach((r, i) => {
      expect(relError(r, reference[i])).toBeLessThan(1e-4);
      expect(Buffer.from(inline[i].buffer).equals(Buffer.from(r.buffer))).toBe(true);
    });
  });

  it('a tiny step settles before the event loop turns (inline); a worker step needs the loop', async () => {
    /** Whether forward's promise settled within microtasks alone (a worker's result arrives through the loop). */
    const settlesInline = async (): Promise<boolean> => {
      const cache = createKvCache(model, NUM_BLOCKS, BLOCK);
      let settled = false;
      const done = step(model, cache, [{ tokens: toks, table, start: 0, len: 1 }]).then(() => (settled = true));
      for (let i = 0; i < 20; i++) await Promise.resolve();
      const inline = settled;
      await done;
      freeCache(cache);
      return inline;
    };
    expect(await settlesInline()).toBe(true); // auto: one token of a 48-wide model
    setModelStepMode(model, 'worker');
    try {
      expect(await settlesInline()).toBe(false);
    } finally {
      setModelStepMode(model, 'auto');
    }
    expect(() => setModelStepMode(model, 'sideways' as 'auto')).toThrow(/step mode/);
  });

  it('the portable kernels give the same logits (f32 and bf16)', async () => {
    ops.setForcePortable(true);
    try {
      const cache = createKvCache(model, NUM_BLOCKS, BLOCK);
      const rows = await feed(model, cache, toks, table, [9, 1, 13]);
      rows.forEach((r, i) => expect(relError(r, reference[i])).toBeLessThan(1e-4));
      freeCache(cache);
      const bf16 = createModel(spec, weights, { dtype: 'bf16' });
      const c16 = createKvCache(bf16, NUM_BLOCKS, BLOCK);
      const portable = await feed(bf16, c16, toks, table, [toks.length]);
      ops.setForcePortable(false);
      const fast = await feed(bf16, c16, toks, table, [toks.length]);
      portable.forEach((r, i) => expect(relError(r, fast[i])).toBeLessThan(1e-5));
      freeCache(c16);
      freeModel(bf16);
    } finally {
      ops.setForcePortable(false);
    }
  });

  it('bf16 weights stay close to f32', async () => {
    const bf16 = createModel(spec, weights, { dtype: 'bf16' });
    const cache = createKvCache(bf16, NUM_BLOCKS, BLOCK);
    const rows = await feed(bf16, cache, toks, table, [10, 13]);
    rows.forEach((r, i) => {
      const err = relError(r, reference[i]);
      expect(err).toBeLessThan(3e-2);
      expect(err).toBeGreaterThan(0); // really rounded
    });
    freeCache(cache);
    freeModel(bf16);
  });

  it('writes each token K/V into its slot and nowhere else; copyBlocks duplicates blocks', async () => {
    const cache = createKvCache(model, NUM_BLOCKS, BLOCK);
    const t = [table[0], table[1]];
    await feed(model, cache, toks.slice(0, 6), t, [6]);
    const { k } = readKvLayer(cache, 1);
    const blockFloats = BLOCK * spec.numKvHeads * spec.headDim;
    const nonzero = (b: number, row: number): boolean =>
      k.subarray(b * blockFloats + row * 16, b * blockFloats + (row + 1) * 16).some((x) => x !== 0);
    for (let p = 0; p < 8; p++) expect(nonzero(t[Math.floor(p / BLOCK)], p % BLOCK)).toBe(p < 6);
    expect(k.subarray(table[2] * blockFloats, (table[2] + 1) * blockFloats).every((x) => x === 0)).toBe(true);

    // Continue the sequence from copies of its blocks: same logits as continuing from the originals.
    const free = Array.from({ length: NUM_BLOCKS }, (_, i) => i).filter((i) => !table.includes(i));
    copyBlocks(cache, t, [free[0], free[1]]);
    const copy = readKvLayer(cache, 0);
    expect(copy.k.subarray(free[1] * blockFloats, free[1] * blockFloats + 32)).toEqual(copy.k.subarray(t[1] * blockFloats, t[1] * blockFloats + 32));
    const fromCopy = await step(model, cache, [{ tokens: toks, table: [free[0], free[1]], start: 6, len: 1 }]);
    const fromOrig = await step(model, cache, [{ tokens: toks, table: t, start: 6, len: 1 }]);
    expect(relError(fromCopy[0], reference[6])).toBeLessThan(1e-4);
    expect(relError(fromOrig[0], reference[6])).toBeLessThan(1e-4);
    freeCache(cache);
  });

  it('tied embeddings with Llama-3 rope scaling match the reference', async () => {
    const tiedSpec: ModelSpec = {
      ...spec,
      tieWordEmbeddings: true,
      attentionBias: false,
      ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16 },
    };
    const w = randomWeights(tiedSpec, 77, expectedWeightShapes(tiedSpec));
    const m = createModel(tiedSpec, w, { dtype: 'f32', threads: 1 });
    const cache = createKvCache(m, NUM_BLOCKS, BLOCK);
    const tokens = prompt(9, 30);
    const tb = blockIds(5, 8);
    const batch: StepBatch = {
      tokens: Int32Array.from(tokens),
      positions: Int32Array.from(tokens.map((_, i) => i)),
      seqIndex: new Int32Array(tokens.length),
      blockTables: Int32Array.from([...tb, -1, -1, -1, -1]),
      maxBlocksPerSeq: MAX_BLOCKS,
      logitRows: Int32Array.from([29, 0, 17]),
    };
    const logits = await forward(m, cache, batch);
    const ref = refModelLogits(tiedSpec, w, tokens);
    [29, 0, 17].forEach((row, i) => {
      expect(relError(logits.subarray(i * spec.vocabSize, (i + 1) * spec.vocabSize), ref.subarray(row * spec.vocabSize, (row + 1) * spec.vocabSize))).toBeLessThan(1e-4);
    });
    freeCache(cache);
    freeModel(m);
  });

  describe('argument checks throw clear errors before crossing into C++', () => {
    const good = (): StepBatch => ({
      tokens: Int32Array.from([1, 2, 3]),
      positions: Int32Array.from([0, 1, 2]),
      seqIndex: Int32Array.from([0, 0, 0]),
      blockTables: Int32Array.from([5, -1]),
      maxBlocksPerSeq: 2,
      logitRows: Int32Array.from([2]),
    });
    let cache: KvCacheHandle;
    beforeAll(() => {
      cache = createKvCache(model, 8, 4);
    });
    afterAll(() => freeCache(cache));

    it('accepts the good batch', async () => {
      await expect(forward(model, cache, good())).resolves.toHaveLength(spec.vocabSize);
    });

    it.each<[string, (b: StepBatch) => void, RegExp]>([
      ['token outside the vocabulary', (b) => (b.tokens[1] = 67), /outside the vocabulary/],
      ['negative token', (b) => (b.tokens[0] = -1), /outside the vocabulary/],
      ['position gap', (b) => (b.positions[2] = 3), /does not follow/],
      ['position beyond the block table', (b) => (b.positions = Int32Array.from([7, 8, 9])), /block table capacity|not a block id/],
      ['block id beyond numBlocks', (b) => (b.blockTables[0] = 8), /not a block id/],
      ['unused block table entry not -1', (b) => (b.blockTables[1] = -7), /neither -1/],
      ['seqIndex out of range', (b) => (b.seqIndex[2] = 1), /seqIndex/],
      ['logit row out of range', (b) => (b.logitRows = Int32Array.from([3])), /logitRows/],
      ['wrong array type', (b) => ((b as { tokens: unknown }).tokens = [1, 2, 3]), /Int32Array/],
      ['length mismatch', (b) => (b.positions = Int32Array.from([0, 1])), /expected 3/],
      ['bad table length', (b) => (b.blockTables = Int32Array.from([5, -1, 2])), /multiple of maxBlocksPerSeq/],
    ])('rejects %s', (_name, mutate, message) => {
      const b = good();
      mutate(b);
      expect(() => forward(model, cache, b)).toThrow(message);
    });

    it('rejects two sequences writing the same slot and non-contiguous sequences', () => {
      const shared: StepBatch = {
        tokens: Int32Array.from([1, 2]),
        positions: Int32Array.from([0, 0]),
        seqIndex: Int32Array.from([0, 1]),
        blockTables: Int32Array.from([3, 3]),
        maxBlocksPerSeq: 1,
        logitRows: Int32Array.from([]),
      };
      expect(() => forward(model, cache, shared)).toThrow(/same KV slot/);
      const split: StepBatch = { ...shared, tokens: Int32Array.from([1, 2, 3]), positions: Int32Array.from([0, 0, 1]), seqIndex: Int32Array.from([0, 1, 0]), blockTables: Int32Array.from([3, 4]) };
      expect(() => forward(model, cache, split)).toThrow(/not contiguous/);
    });

    it('rejects missing or mis-shaped weights and bad specs', () => {
      const missing = new Map(weights);
      missing.delete('model.layers.1.mlp.up_proj.weight');
      expect(() => createModel(spec, missing, { dtype: 'f32' })).toThrow(/missing weight tensor model.layers.1.mlp.up_proj.weight/);
      const wrong = new Map(weights);
      wrong.set('model.layers.0.self_attn.k_proj.weight', new Float32Array(10));
      expect(() => createModel(spec, wrong, { dtype: 'f32' })).toThrow(/k_proj.weight has 10 elements, expected 16x48/);
      expect(() => createModel({ ...spec, numKvHeads: 4 }, weights, { dtype: 'f32' })).toThrow(/must divide/);
      expect(() => createModel(spec, weights, { dtype: 'f16' as 'f32' })).toThrow(/dtype/);
    });

    it('rejects freed handles, foreign handles and bad copyBlocks ids', async () => {
      const m = createModel(spec, weights, { dtype: 'f32', threads: 1 });
      const c = createKvCache(m, 4, 4);
      freeModel(m);
      expect(() => forward(m, c, good())).toThrow(/model was freed/);
      expect(() => createKvCache(m, 4, 4)).toThrow(/model was freed/);
      expect(() => forward(model, {} as KvCacheHandle, good())).toThrow(/not a KV cache handle/);
      expect(() => copyBlocks(c, [0], [4])).toThrow(/dst\[0\]/);
      expect(() => copyBlocks(c, [0, 1], [2, 2])).toThrow(/destination twice/);
      freeCache(c);
      expect(() => copyBlocks(c, [0], [1])).toThrow(/KV cache was freed/);
    });
  });
});
