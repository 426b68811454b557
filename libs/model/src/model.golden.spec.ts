/**
 * The whole model against an independent reference: logits from the native kernels (f32 weights, loaded
 * through the real loader from safetensors and from GGUF) match the float64 PyTorch forward of
 * scripts/reference/llama_reference.py to 1e-4 relative (to the case's largest logit), for stories260K
 * and for random models with GQA/MQA, qkv bias, an untied head, llama3 RoPE scaling, Qwen3 q/k norms, SmolLM3 NoPE
 * layers and Phi-3 fused projections with partial LongRoPE. Each prompt runs
 * as one prefill and again one token at a time (the decode path) through shuffled KV blocks.
 */
import * as path from 'node:path';
import { createKvCache, createModel, forward, freeCache, freeModel, type ModelSpec, type WeightMap } from '@flywheel/kernels';
import { loadModelWeights } from './loading';
import { caseLogits, FIXTURES_DIR, goldenCheckpointPath, readGolden, REPO_ROOT, type GoldenCase } from './loading/model-files.testing';

const BLOCK = 16;
const REL_TOL = 1e-4;

/** Logits (T, vocab) for `tokens`, either in one prefill or one token per step, over a scrambled block table. */
async function runTokens(spec: ModelSpec, weights: WeightMap, tokens: number[], mode: 'prefill' | 'decode'): Promise<Float32Array> {
  const model = createModel(spec, weights, { dtype: 'f32', threads: 2 });
  const blocks = Math.ceil(tokens.length / BLOCK);
  const numBlocks = blocks * 3 + 1;
  const cache = createKvCache(model, numBlocks, BLOCK);
  // Physical blocks deliberately out of order and not starting at 0.
  const table = Int32Array.from({ length: blocks }, (_, i) => numBlocks - 1 - 2 * i);
  try {
    const T = tokens.length;
    if (mode === 'prefill') {
      return await forward(model, cache, {
        tokens: Int32Array.from(tokens),
        positions: Int32Array.from(tokens, (_, i) => i),
        seqIndex: new Int32Array(T),
        blockTables: table,
        maxBlocksPerSeq: blocks,
        logitRows: Int32Array.from(tokens, (_, i) => i),
      });
    }
    const out = new Float32Array(T * spec.vocabSize);
    for (let t = 0; t < T; t++) {
      const row = await forward(model, cache, {
        tokens: Int32Array.of(tokens[t]!),
        positions: Int32Array.of(t),
        seqIndex: Int32Array.of(0),
        blockTables: table,
        maxBlocksPerSeq: blocks,
        logitRows: Int32Array.of(0),
      });
      out.set(row, t * spec.vocabSize);
    }
    return out;
  } finally {
    freeCache(cache);
    freeModel(model);
  }
}

function relError(got: Float32Array, want: Float32Array): number {
  let maxDiff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(got[i]! - want[i]!));
    scale = Math.max(scale, Math.abs(want[i]!));
  }
  return maxDiff / Math.max(scale, 1e-6);
}

const GOLDENS = ['stories260K-hf', 'tiny-gqa', 'tiny-gqa-bf16', 'tiny-gqa-q8_0', 'tiny-mqa-llama3', 'tiny-qwen3', 'tiny-smollm3', 'tiny-phi3', 'tiny-gemma2', 'tiny-gemma3', 'tiny-gemma3-linear', 'tiny-mistral-swa'];

describe.each(GOLDENS)('golden logits: %s', (name) => {
  const golden = readGolden(name);
  // Named by the committed file each case loads (the index may name the shared original it was made from).
  const checkpoints = golden.checkpoints.map((ref) => path.relative(REPO_ROOT, goldenCheckpointPath(ref)));
  const cases: [string, string, GoldenCase][] = checkpoints.flatMap((ckpt) => golden.cases.map((c) => [ckpt, c.name, c] as [string, string, GoldenCase]));

  it.each(cases)('%s / %s matches the float64 reference (prefill and decode)', async (ckpt, _name, c) => {
    const loaded = await loadModelWeights(path.join(REPO_ROOT, ckpt));
    expect(loaded.spec.vocabSize).toBe(c.shape[1]);
    const want = caseLogits(golden, c);
    const prefill = await runTokens(loaded.spec, loaded.weights, c.tokens, 'prefill');
    const decode = await runTokens(loaded.spec, loaded.weights, c.tokens, 'decode');
    expect(relError(prefill, want)).toBeLessThan(REL_TOL);
    expect(relError(decode, want)).toBeLessThan(REL_TOL);
  });
});

it.each(['tiny-gqa', 'tiny-qwen3', 'tiny-smollm3', 'tiny-phi3'])('the same model from GGUF gives the same logits as from safetensors (%s)', async (name) => {
  const golden = readGolden(name);
  const c = golden.cases.at(-1)!;
  const st = await loadModelWeights(path.join(FIXTURES_DIR, name));
  const gg = await loadModelWeights(path.join(FIXTURES_DIR, `${name}.gguf`));
  expect(gg.spec).toEqual(st.spec);
  const a = await runTokens(st.spec, st.weights, c.tokens, 'prefill');
  const b = await runTokens(gg.spec, gg.weights, c.tokens, 'prefill');
  expect(relError(b, a)).toBeLessThan(1e-6);
});
