/**
 * The second, independent check of the architectures the engine adds (issue 15): llama.cpp itself. Each tiny GGUF
 * fixture our GGUF writer writes (Gemma 2, Gemma 3, Qwen3, SmolLM3, Phi-3, Llama) is copied with a SentencePiece vocabulary added (llama.cpp
 * refuses a file without one; the ids are what matter; see `padded`), run greedily in node-llama-cpp (pinned, installed into
 * .bench-cache like the benchmark anchor) on each golden case's prompt ids, and its first ids are written to
 * test/fixtures/golden/llamacpp-greedy.json. model.llamacpp.spec.ts holds our engine to them. A LongRoPE model (Phi-3)
 * records which factor set llama.cpp used: it picks one for every position by the context size (long when the context
 * exceeds the original one, as the full context of tiny-phi3 does), where our engine switches per token. Run by hand:
 * `npm run build:ts && node dist/scripts/reference/llamacpp-greedy.js`. Not run by the tests (no llama.cpp there).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { loadNodeLlamaCpp, NODE_LLAMA_CPP_VERSION } from '../../bench/llamacpp.anchor';
import { findRepoRoot } from '../../libs/kernels/src';
import type { ModelSpec, ServingWeightMap } from '../../libs/kernels/src';
import { readGguf, syntheticSpmVocab, writeGguf } from '../../libs/model/src/loading';

const FIXTURES_DIR = path.join(findRepoRoot(__dirname) ?? process.cwd(), 'test', 'fixtures');
const goldenCases = (name: string): { name: string; tokens: number[] }[] =>
  (JSON.parse(readFileSync(path.join(FIXTURES_DIR, 'golden', `${name}.json`), 'utf8')) as { cases: { name: string; tokens: number[] }[] }).cases;

const MODELS = ['tiny-gemma2', 'tiny-gemma3', 'tiny-gemma3-linear', 'tiny-qwen3', 'tiny-smollm3', 'tiny-phi3', 'tiny-gqa', 'tiny-mqa-llama3'];
const NEW_TOKENS = 8;

/**
 * The model with its vocabulary padded to PADDED_VOCAB ids by zero embedding (and LM-head) rows, so that llama.cpp
 * gets a SentencePiece vocabulary with its 256 byte pieces (it tokenizes probe strings at load and aborts when a byte
 * has no piece). A zero row's logit is exactly 0: a greedy id below the real vocab size is the argmax over the real
 * ids too, and a padded id (a step where every real logit is negative) is reported instead of used.
 */
const PADDED_VOCAB = 384;

function padded(spec: ModelSpec, weights: ServingWeightMap): { spec: ModelSpec; weights: ServingWeightMap } {
  const pad = (name: string): void => {
    const t = weights.get(name);
    if (t === undefined) return;
    if (!(t instanceof Float32Array)) throw new Error(`${name} is not f32`);
    const out = new Float32Array(PADDED_VOCAB * spec.hiddenSize);
    out.set(t);
    grown.set(name, out);
  };
  const grown = new Map(weights);
  pad('model.embed_tokens.weight');
  if (!spec.tieWordEmbeddings) pad('lm_head.weight');
  return { spec: { ...spec, vocabSize: PADDED_VOCAB }, weights: grown };
}

async function main(): Promise<void> {
  const nlc = await loadNodeLlamaCpp();
  const llama = await nlc.getLlama({ gpu: false, build: 'never', progressLogs: false, maxThreads: 1, logLevel: 'error' });
  const dir = mkdtempSync(path.join(tmpdir(), 'flywheel-llamacpp-greedy-'));
  const out: Record<string, { file: string; longRopeFactors?: 'short' | 'long'; cases: { name: string; tokens: number[]; greedy: number[] }[] }> = {};
  try {
    for (const name of MODELS) {
      const src = await readGguf(path.join(FIXTURES_DIR, `${name}.gguf`));
      const file = path.join(dir, `${name}.gguf`);
      const big = padded(src.spec, src.servingWeights);
      // No general.name: llama.cpp sets token attributes of "<|endoftext|>" in a model whose name says phi3, and the
      // synthetic vocabulary has no such piece (the load fails with _Map_base::at).
      await writeGguf(file, { spec: big.spec, weights: big.weights, vocab: syntheticSpmVocab(PADDED_VOCAB) });
      const model = await llama.loadModel({ modelPath: file, gpuLayers: 0, useMmap: false });
      const contextSize = src.spec.maxPositionEmbeddings;
      const context = await model.createContext({ contextSize, sequences: 1, batchSize: 64, threads: { ideal: 1, min: 1 } });
      const seq = context.getSequence();
      const cases = [];
      for (const c of goldenCases(name)) {
        await seq.clearHistory();
        const gen = seq.evaluate(c.tokens, { temperature: 0, yieldEogToken: true });
        const greedy: number[] = [];
        for (let i = 0; i < NEW_TOKENS; i++) {
          const r = await gen.next();
          if (r.done === true) throw new Error(`${name}/${c.name}: llama.cpp stopped after ${greedy.length} tokens`);
          if (r.value >= src.spec.vocabSize) throw new Error(`${name}/${c.name}: a padded id won step ${greedy.length}; drop this case`);
          greedy.push(r.value);
        }
        await gen.return(undefined);
        cases.push({ name: c.name, tokens: c.tokens, greedy });
      }
      await context.dispose();
      await model.dispose();
      // llama_model::get_rope_factors: rope_long when n_ctx_seq > n_ctx_orig_yarn, else rope_short, at every position.
      const lr = src.spec.longRope;
      out[name] = { file: `${name}.gguf`, ...(lr ? { longRopeFactors: contextSize > lr.originalMaxPositionEmbeddings ? 'long' : 'short' } : {}), cases };
      process.stderr.write(`${name}: ${cases.map((c) => c.greedy.join(' ')).join(' | ')}\n`);
    }
  } finally {
    await llama.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
  const golden = {
    generator: 'scripts/reference/llamacpp-greedy.ts',
    engine: `node-llama-cpp ${NODE_LLAMA_CPP_VERSION} (prebuilt CPU build), 1 thread, temperature 0`,
    note: `each fixture GGUF with its vocab padded to ${PADDED_VOCAB} by zero rows and a SentencePiece vocabulary; greedy ids after each golden case prompt`,
    models: out,
  };
  writeFileSync(path.join(FIXTURES_DIR, 'golden', 'llamacpp-greedy.json'), `${JSON.stringify(golden, null, 1)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
