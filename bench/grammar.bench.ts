/**
 * What structured outputs cost. Output: ONE JSON object on stdout:
 *   {"vocabs": {<name>: {"vocab_size", "compile_ms", "cached_compile_ms", "mask_us_per_token": {"p50","mean","p99"},
 *               "apply_us_per_token", "tokens"}},
 *    "engine": {"model": "stories260K", "sequences", "tokens_per_seq", "free_tok_s", "constrained_tok_s", "ratio"}}
 * vocabs: the xgrammar matcher alone, walking the same JSON schema (nested objects, arrays, enums, bounded strings)
 * with a seeded random choice among the allowed tokens until the grammar ends; per token: the next-token bitmask
 * plus accepting the token (mask_us_per_token), and applying the mask to a logits row (apply_us_per_token).
 * Vocabularies: stories260K (512 ids, byte fallback, committed) and, when ../shared holds llama.cpp's
 * ggml-vocab-gpt-2.gguf, GPT-2's 50257-id byte-level vocabulary (a realistic size).
 * engine: the native engine on stories260K, 8 sequences × 64 tokens, free (EOS ignored) against the same
 * sequences under a JSON grammar that cannot end early (an array of integers): aggregate tok/s of each and their
 * ratio, the same run. Options: --seqs N, --tokens N, --walks N.
 * Build and run: npm run bench:grammar -- --json. Not a test (libs/model/src/grammar/structured-output.spec.ts).
 */
import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import type { OutputConstraint } from '@flywheel/contracts';
import {
  createNativeEngine,
  DEFAULT_SAMPLING,
  loadCheckpoint,
  StructuredOutputCompiler,
  Xoshiro128,
  type GenerateRequest,
  type GrammarVocab,
} from '@flywheel/model';
import { applyAllowedMask } from '../libs/model/src/engine/sampler';
import { parseGgufHeader } from '../libs/model/src/loading/gguf-header.parser';
import { positiveInt } from './bench.shapes';

const ROOT = path.resolve(__dirname, '..', '..');
const STORIES_DIR = path.join(ROOT, 'models', 'stories260K');
const GPT2_VOCAB = path.resolve(ROOT, '..', 'shared', 'models', 'tokenizers', 'ggml-vocab-gpt-2.gguf');

const SCHEMA = {
  type: 'object',
  properties: {
    id: { type: 'integer', minimum: 0, maximum: 1_000_000 },
    name: { type: 'string', minLength: 1, maxLength: 24 },
    role: { enum: ['admin', 'editor', 'viewer'] },
    tags: { type: 'array', items: { type: 'string', maxLength: 12 }, maxItems: 4 },
    address: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 20 }, zip: { type: 'string', pattern: '^[0-9]{5}$' } },
      required: ['city', 'zip'],
      additionalProperties: false,
    },
    active: { type: 'boolean' },
  },
  required: ['id', 'name', 'role', 'tags', 'address', 'active'],
  additionalProperties: false,
};

interface Options {
  seqs: number;
  tokens: number;
  walks: number;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { seqs: 8, tokens: 64, walks: 20 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') continue;
    else if (a === '--seqs') opts.seqs = positiveInt(argv[++i], '--seqs');
    else if (a === '--tokens') opts.tokens = positiveInt(argv[++i], '--tokens');
    else if (a === '--walks') opts.walks = positiveInt(argv[++i], '--walks');
    else throw new Error(`unknown argument ${a}`);
  }
  return opts;
}

const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;

async function gpt2Vocab(): Promise<GrammarVocab | null> {
  if (!existsSync(GPT2_VOCAB)) return null;
  const fh = await open(GPT2_VOCAB, 'r');
  try {
    const header = await parseGgufHeader(fh, GPT2_VOCAB);
    const tokens = header.metadata.get('tokenizer.ggml.tokens');
    const types = header.metadata.get('tokenizer.ggml.token_type');
    if (!Array.isArray(tokens)) return null;
    // GGUF token type 3 = control (special).
    const specialIds = Array.isArray(types) ? types.flatMap((t, i) => (Number(t) === 3 ? [i] : [])) : [];
    return { tokens: tokens.map(String), vocabType: 'byte_level', specialIds };
  } finally {
    await fh.close();
  }
}

async function measureVocab(vocab: GrammarVocab, stopIds: number[], walks: number) {
  const started = performance.now();
  const compiler = await StructuredOutputCompiler.create(vocab, { vocabSize: vocab.tokens.length, stopTokenIds: stopIds, toolCallFormat: 'hermes' });
  const spec: OutputConstraint = { kind: 'json_schema', schema: SCHEMA, strict: true };
  await compiler.constraints(spec, 1).then((cs) => cs.forEach((c) => c.dispose()));
  const compileMs = performance.now() - started;
  const cachedStart = performance.now();
  await compiler.constraints(spec, 1).then((cs) => cs.forEach((c) => c.dispose()));
  const cachedMs = performance.now() - cachedStart;

  const V = vocab.tokens.length;
  const logits = new Float32Array(V);
  const perToken: number[] = [];
  let applyTotal = 0;
  for (let w = 0; w < walks; w++) {
    const rng = new Xoshiro128(w);
    const [c] = await compiler.constraints(spec, 1);
    for (let step = 0; step < 2000 && !c!.isTerminated(); step++) {
      const t0 = performance.now();
      const mask = await c!.nextMask();
      const maskUs = (performance.now() - t0) * 1000;
      const allowed: number[] = [];
      for (let i = 0; i < V; i++) if ((mask[i >> 5]! >>> (i & 31)) & 1) allowed.push(i);
      // Prefer ending a string or structure sometimes, so walks finish: a uniform pick among the allowed ids.
      const id = allowed[Math.floor(rng.nextFloat() * allowed.length)]!;
      const t1 = performance.now();
      if (!c!.accept(id)) throw new Error('grammar refused an allowed token');
      perToken.push(maskUs + (performance.now() - t1) * 1000);
      logits.fill(0);
      const a0 = performance.now();
      applyAllowedMask(logits, mask, []);
      applyTotal += performance.now() - a0;
    }
    c!.dispose();
  }
  compiler.dispose();
  const sorted = [...perToken].sort((a, b) => a - b);
  return {
    vocab_size: V,
    compile_ms: round(compileMs),
    cached_compile_ms: round(cachedMs),
    mask_us_per_token: { p50: round(quantile(sorted, 0.5)), mean: round(perToken.reduce((a, b) => a + b, 0) / perToken.length), p99: round(quantile(sorted, 0.99)) },
    apply_us_per_token: round((applyTotal * 1000) / perToken.length),
    tokens: perToken.length,
  };
}

async function measureEngine(opts: Options) {
  const ckpt = await loadCheckpoint(STORIES_DIR);
  const native = createNativeEngine(ckpt, { numBlocks: 512, blockSize: 16, threads: undefined });
  const compiler = await StructuredOutputCompiler.create(ckpt.tokenizer.grammarVocab(), {
    vocabSize: ckpt.spec.vocabSize,
    stopTokenIds: ckpt.generation.eosTokenIds,
    toolCallFormat: 'hermes',
  });
  const spec: OutputConstraint = { kind: 'json_schema', schema: { type: 'array', items: { type: 'integer' } }, strict: true };
  const request = (id: string, seed: number): GenerateRequest => ({
    requestId: id,
    promptTokenIds: [1, 403, 407, 261, 378],
    maxTokens: opts.tokens,
    n: 1,
    stop: [],
    stopTokenIds: [],
    ignoreEos: true,
    sampling: { ...DEFAULT_SAMPLING, temperature: 1, seed },
  });
  const run = async (constrained: boolean, round: number): Promise<number> => {
    const reqs = await Promise.all(
      Array.from({ length: opts.seqs }, async (_, i) => {
        const r = request(`${constrained ? 'c' : 'f'}-${round}-${i}`, i);
        return constrained ? { ...r, constraints: await compiler.constraints(spec, 1) } : r;
      }),
    );
    const t0 = performance.now();
    let tokens = 0;
    await Promise.all(
      reqs.map(async (r) => {
        for await (const ev of native.engine.generate(r)) tokens += ev.tokenIds.length;
      }),
    );
    return tokens / ((performance.now() - t0) / 1000);
  };
  await run(false, -1);
  await run(true, -1);
  const free: number[] = [];
  const constrained: number[] = [];
  for (let r = 0; r < 5; r++) {
    free.push(await run(false, r));
    constrained.push(await run(true, r));
  }
  await native.close();
  compiler.dispose();
  const best = (xs: number[]) => Math.max(...xs);
  return {
    model: 'stories260K',
    sequences: opts.seqs,
    tokens_per_seq: opts.tokens,
    free_tok_s: round(best(free), 1),
    constrained_tok_s: round(best(constrained), 1),
    ratio: round(best(constrained) / best(free), 3),
  };
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const stories = await loadCheckpoint(STORIES_DIR);
  const vocabs: Record<string, unknown> = {
    stories260K: await measureVocab(stories.tokenizer.grammarVocab(), stories.generation.eosTokenIds, opts.walks),
  };
  const gpt2 = await gpt2Vocab();
  if (gpt2) vocabs['gpt2-50257'] = await measureVocab(gpt2, [50256], opts.walks);
  const engine = await measureEngine(opts);
  process.stdout.write(`${JSON.stringify({ vocabs, engine, gpt2_vocab: gpt2 ? GPT2_VOCAB : 'not found (needs ../shared)' })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
