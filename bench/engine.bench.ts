/**
 * Engine throughput benchmark on seeded random weights of a model shape (`--shape smollm2-135m`, the default,
 * `qwen-0.5b-like` or `gemma3-1b-like`: bench.shapes.ts) or on a real GGUF file (`--model FILE.gguf`, served with dtype `auto`: each tensor
 * in the file's own type). Output: ONE JSON object on stdout. With one dtype it is
 *   {"model":"smollm2-135m-shape","dtype":...,"threads":...,"bandwidth_gbps":<triad, same run>,
 *    "decode":{"1":tok_s,"4":tok_s,"16":tok_s},"prefill_tok_s":<pp512>,"roofline_ratio_batch1":...,"weight_types":{...}}
 * and with `--dtype both` (the default) it is {"f32":{...},"bf16":{...}} holding one such object per dtype
 * (`--dtype all`: f32, bf16, every GGML type and llama.cpp's mixes; `--dtype f32,q4_k`: any list of f32, bf16, q8_0,
 * q4_0, q4_k, q5_k, q6_k, and q4_k_m / q5_k_m: each matrix in the type llama-quantize's mix gives it), measured one
 * after another in the same run; with --model, `auto` comes first and the list re-quantizes the file.
 * A quantized dtype quantizes the f32 weights on load; a matrix whose rows its blocks cannot split falls back to q8_0
 * (SmolLM2's hidden 576 is not a multiple of 256, so K-quants there cover only down_proj): weight_types is
 * modelInfo().weightTypes, the matrices per stored type.
 * decode[B]: B sequences each decode 128 tokens after a 16-token prompt; aggregate tok/s of the best window of
 * 32 steps (shared 2-core boxes are noisy: other processes steal a core for seconds at a time), and
 * decode_mean[B] the same over all 128 steps. prefill_tok_s: best of 2 runs of one 512-token prefill.
 * bandwidth_gbps: STREAM triad (best of 5 passes over 3 x 128 MiB) measured just before that dtype's batch-1 run.
 * roofline_ratio_batch1: weight bytes streamed per second at batch 1 (all matrices incl. LM head, stored dtype;
 * best window) divided by bandwidth_gbps. With several dtypes, "ratios" holds "q8_0/bf16"-style throughput ratios.
 * --anchor: node-llama-cpp (llamacpp.anchor.ts) runs the same weights in the same run, right after ours each round:
 * the random model is written to a temporary GGUF exactly as our engine stores it for that dtype (and ours is then
 * built from those same blocks), a --model file is used as is. Each dtype's object gains "anchor": {engine, decode
 * {"1","16"}, decode_mean, prefill_tok_s, ratio {decode_1, decode_16, prefill}: ours / llama.cpp with decode as the
 * mean over all steps, ratios_ours_over_llamacpp: the same with decode's best windows} or {"error": ...}.
 * --rounds N measures every dtype once per round, round-robin, and reports each figure's best over the rounds.
 * --anchor-threads N: llama.cpp's thread count (default: ours). On our 2-vCPU VM node-llama-cpp's steps cost ~10 ms
 * more with 2 threads than with 1 even for a 1 MB model (thread start or wake-up per decode call, it seems): compare
 * with 1 thread too.
 * --kv-dtype f16|f32: the KV cache's storage, f16 by default as the policy serves it (FLYWHEEL_KV_DTYPE) and as
 * llama.cpp keeps its own (node-llama-cpp's default), so both sides read the same cache bytes per token.
 * Options: --shape NAME, --model FILE, --anchor, --anchor-threads N, --threads N, --decode-tokens N, --prompt N, --prefill N, --rounds N, --kv-dtype.
 * Build and run: npx tsc -p tsconfig.build.json && node dist/bench/engine.bench.js --json
 * This is not a correctness test (see libs/kernels/src/*.spec.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  createKvCache,
  createModel,
  forward,
  freeCache,
  freeModel,
  measureTriadGbps,
  modelInfo,
  nativeInfo,
} from '../libs/kernels/src';
import { isQuantMix, isQuantType, QUANT_MIXES, QUANT_TYPES } from '../libs/kernels/src';
import type { KvCacheHandle, KvDtype, ModelHandle, ModelSpec, ServedDtype, ServingWeightMap } from '../libs/kernels/src';
import { readGguf, syntheticSpmVocab, writeGguf, type GgufVocab } from '../libs/model/src/loading';
import { BENCH_SHAPES, positiveInt, randomWeights } from './bench.shapes';
import { engineWeightsFor, LlamaCppAnchor, type AnchorMeasured } from './llamacpp.anchor';

const BLOCK_SIZE = 16;
const BATCHES = [1, 4, 16];
/** The anchor's batches: one stream and the widest of ours. */
const ANCHOR_BATCHES = [1, 16];

type BenchDtype = ServedDtype | 'auto';

interface Options {
  /** null: the default for the source (f32 and bf16 for a shape, auto alone for a file). */
  dtypes: ServedDtype[] | null;
  shape: string;
  model: string | null;
  anchor: boolean;
  /** llama.cpp's threads; default: as many as ours. */
  anchorThreads: number | undefined;
  threads: number | undefined;
  decodeTokens: number;
  prompt: number;
  prefill: number;
  rounds: number;
  /** KV-cache storage: f16 by default, as the policy serves (FLYWHEEL_KV_DTYPE) and as llama.cpp stores its cache. */
  kvDtype: KvDtype;
}

function parseDtypes(v: string): ServedDtype[] {
  if (v === 'both') return ['f32', 'bf16'];
  if (v === 'all') return ['f32', 'bf16', ...QUANT_TYPES, ...QUANT_MIXES];
  const list = v.split(',');
  if (!list.every((d): d is ServedDtype => d === 'f32' || d === 'bf16' || isQuantType(d) || isQuantMix(d))) {
    throw new Error(`--dtype must be f32, bf16, ${[...QUANT_TYPES, ...QUANT_MIXES].join(', ')}, a comma list of them, both or all`);
  }
  return list;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = {
    dtypes: null,
    shape: 'smollm2-135m',
    model: null,
    anchor: false,
    anchorThreads: undefined,
    threads: undefined,
    decodeTokens: 128,
    prompt: 16,
    prefill: 512,
    rounds: 1,
    kvDtype: 'f16',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') continue;
    else if (a === '--dtype') opts.dtypes = parseDtypes(argv[++i] ?? '');
    else if (a === '--shape') {
      opts.shape = argv[++i] ?? '';
      if (BENCH_SHAPES[opts.shape] === undefined) throw new Error(`--shape must be one of ${Object.keys(BENCH_SHAPES).join(', ')}`);
    } else if (a === '--model') opts.model = argv[++i] ?? '';
    else if (a === '--anchor') opts.anchor = true;
    else if (a === '--anchor-threads') opts.anchorThreads = positiveInt(argv[++i], '--anchor-threads');
    else if (a === '--threads') opts.threads = positiveInt(argv[++i], '--threads');
    else if (a === '--decode-tokens') opts.decodeTokens = positiveInt(argv[++i], '--decode-tokens');
    else if (a === '--prompt') opts.prompt = positiveInt(argv[++i], '--prompt');
    else if (a === '--prefill') opts.prefill = positiveInt(argv[++i], '--prefill');
    else if (a === '--rounds') opts.rounds = positiveInt(argv[++i], '--rounds');
    else if (a === '--kv-dtype') {
      const v = argv[++i];
      if (v !== 'f16' && v !== 'f32') throw new Error('--kv-dtype must be f16 or f32');
      opts.kvDtype = v;
    }
    else throw new Error(`unknown argument ${a} (--help lists the options)`);
  }
  return opts;
}


function now(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

const WINDOW = 32;

/**
 * Runs B sequences: one batched prompt prefill, then `steps` decode steps of B tokens. Returns aggregate tok/s
 * of the best window of WINDOW steps and over all steps.
 */
async function decodeThroughput(
  model: ModelHandle,
  cache: KvCacheHandle,
  B: number,
  prompt: number,
  steps: number,
  maxBlocks: number,
): Promise<{ best: number; mean: number }> {
  const vocab = modelInfo(model).spec.vocabSize;
  const tables = new Int32Array(B * maxBlocks);
  for (let i = 0; i < tables.length; i++) tables[i] = i; // sequence b owns blocks b*maxBlocks ..
  let tok = 1;
  const nextToken = (): number => (tok = (tok * 1103515245 + 12345) % vocab);
  const T0 = B * prompt;
  await forward(model, cache, {
    tokens: Int32Array.from({ length: T0 }, nextToken),
    positions: Int32Array.from({ length: T0 }, (_, i) => i % prompt),
    seqIndex: Int32Array.from({ length: T0 }, (_, i) => Math.floor(i / prompt)),
    blockTables: tables,
    maxBlocksPerSeq: maxBlocks,
    logitRows: Int32Array.from({ length: B }, (_, b) => b * prompt + prompt - 1),
  });
  const seqIndex = Int32Array.from({ length: B }, (_, b) => b);
  const logitRows = seqIndex;
  const started = now();
  let windowStart = started;
  let best = 0;
  for (let step = 0; step < steps; step++) {
    await forward(model, cache, {
      tokens: Int32Array.from({ length: B }, nextToken),
      positions: new Int32Array(B).fill(prompt + step),
      seqIndex,
      blockTables: tables,
      maxBlocksPerSeq: maxBlocks,
      logitRows,
    });
    if ((step + 1) % WINDOW === 0 || step === steps - 1) {
      const t = now();
      best = Math.max(best, (B * ((step % WINDOW) + 1)) / (t - windowStart));
      windowStart = t;
    }
  }
  return { best, mean: (B * steps) / (now() - started) };
}

async function prefillThroughput(model: ModelHandle, cache: KvCacheHandle, T: number, maxBlocks: number): Promise<number> {
  const vocab = modelInfo(model).spec.vocabSize;
  const batch = {
    tokens: Int32Array.from({ length: T }, (_, i) => (i * 7919 + 13) % vocab),
    positions: Int32Array.from({ length: T }, (_, i) => i),
    seqIndex: new Int32Array(T),
    blockTables: Int32Array.from({ length: maxBlocks }, (_, i) => i),
    maxBlocksPerSeq: maxBlocks,
    logitRows: Int32Array.from([T - 1]),
  };
  let best = 0;
  for (let rep = 0; rep < 2; rep++) {
    const started = now();
    await forward(model, cache, batch);
    best = Math.max(best, T / (now() - started));
  }
  return best;
}

const round = (x: number, digits = 1): number => Number(x.toFixed(digits));

/** What is benched: a shape's seeded random weights, or a GGUF file's tensors as stored. */
interface Source {
  label: string;
  spec: ModelSpec;
  weights: ServingWeightMap;
  file: string | null;
  vocab: GgufVocab | null;
}

async function loadSource(opts: Options): Promise<Source> {
  if (opts.model === null) {
    const spec = BENCH_SHAPES[opts.shape];
    return { label: `${opts.shape}-shape`, spec, weights: randomWeights(spec, 42), file: null, vocab: null };
  }
  const gguf = await readGguf(opts.model);
  return { label: path.basename(opts.model), spec: gguf.spec, weights: gguf.servingWeights, file: opts.model, vocab: gguf.vocab };
}

interface Run {
  dtype: BenchDtype;
  model: ModelHandle;
  cache: KvCacheHandle;
  best: Measured | null;
  anchor: LlamaCppAnchor | null;
  anchorBest: AnchorMeasured | null;
  anchorError: string | null;
  anchorThreads: number;
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

const USAGE = `usage: npm run bench:engine -- --json [--dtype f32|bf16|${[...QUANT_TYPES, ...QUANT_MIXES].join('|')}|both|all, or a comma list]
  [--shape ${Object.keys(BENCH_SHAPES).join('|')}] [--model FILE.gguf] [--anchor] [--anchor-threads N] [--threads N]
  [--decode-tokens N] [--prompt N] [--prefill N] [--rounds N] [--kv-dtype f16|f32]
Prints one JSON object (see the head of bench/engine.bench.ts); --anchor runs node-llama-cpp 3.21.1 on the same weights.`;

async function main(): Promise<void> {
  if (process.argv.includes('--help') || process.argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const opts = parseArgs(process.argv.slice(2));
  const source = await loadSource(opts);
  const { spec } = source;
  const dtypes: BenchDtype[] = source.file === null ? (opts.dtypes ?? ['f32', 'bf16']) : ['auto', ...(opts.dtypes ?? [])];
  const maxBlocks = Math.ceil(Math.max(opts.prompt + opts.decodeTokens, opts.prefill) / BLOCK_SIZE);
  const tmp = opts.anchor ? mkdtempSync(path.join(os.tmpdir(), 'engine-bench-')) : null;
  const runs: Run[] = [];
  try {
    for (const dtype of dtypes) {
      let weights = source.weights;
      let anchorFile = source.file;
      if (tmp !== null && dtype !== 'auto') {
        // Both engines get the very same blocks: ours keeps tensors already in its dtype bit for bit.
        weights = engineWeightsFor(spec, source.weights, dtype);
        anchorFile = path.join(tmp, `${dtype}.gguf`);
        await writeGguf(anchorFile, {
          spec,
          weights,
          name: source.label,
          vocab: source.vocab ?? syntheticSpmVocab(spec.vocabSize),
          floatType: dtype === 'bf16' ? 'bf16' : 'f32',
        });
      }
      const model = createModel(spec, weights, { dtype, threads: opts.threads });
      const run: Run = {
        dtype,
        model,
        cache: createKvCache(model, maxBlocks * Math.max(...BATCHES), BLOCK_SIZE, opts.kvDtype),
        best: null,
        anchor: null,
        anchorBest: null,
        anchorError: null,
        anchorThreads: opts.anchorThreads ?? modelInfo(model).threads,
      };
      if (anchorFile !== null && tmp !== null) {
        try {
          run.anchor = await LlamaCppAnchor.open(anchorFile, {
            threads: run.anchorThreads,
            contextSize: Math.max(opts.prompt + opts.decodeTokens + 1, opts.prefill),
            sequences: Math.max(...ANCHOR_BATCHES),
            batchSize: opts.prefill,
            vocab: spec.vocabSize,
          });
        } catch (err) {
          run.anchorError = `node-llama-cpp could not load ${anchorFile}: ${errorText(err)}`;
        }
      }
      runs.push(run);
    }
    if (source.file === null && source.weights instanceof Map) source.weights.clear();
    // Round-robin: on a shared box bandwidth moves by 2-5x within minutes, so each round measures every dtype back to
    // back (and llama.cpp right after ours) and each figure is its best over the rounds; ratios then compare like
    // conditions.
    for (let r = 0; r < opts.rounds; r++) {
      for (const run of runs) {
        run.best = bestOf(run.best, await measure(run.model, run.cache, maxBlocks, opts));
        if (run.anchor === null) continue;
        try {
          const m = await run.anchor.measure({ batches: ANCHOR_BATCHES, prompt: opts.prompt, decodeTokens: opts.decodeTokens, prefill: opts.prefill });
          run.anchorBest = run.anchorBest === null ? m : bestOfAnchor(run.anchorBest, m);
        } catch (err) {
          run.anchorError = `node-llama-cpp failed: ${errorText(err)}`;
          await run.anchor.close().catch(() => undefined);
          run.anchor = null;
        }
      }
    }
    const results: Record<string, unknown> = {};
    const native = nativeInfo();
    for (const run of runs) {
      const m = run.best as Measured;
      const info = modelInfo(run.model);
      results[run.dtype] = {
        model: source.label,
        dtype: run.dtype,
        threads: info.threads,
        simd: native.simd,
        int8_dot: native.int8Dot,
        amx: native.amx,
        rounds: opts.rounds,
        kv_dtype: opts.kvDtype,
        bandwidth_gbps: round(m.bandwidth, 2),
        decode: m.decode,
        decode_mean: m.decodeMean,
        prefill_tok_s: round(m.prefill),
        roofline_ratio_batch1: round((m.decode['1'] * info.matmulWeightBytes) / (m.bandwidth * 1e9), 3),
        weight_bytes_per_token: info.matmulWeightBytes,
        weight_types: info.weightTypes,
        ...(opts.anchor ? { anchor: anchorResult(run, m) } : {}),
      };
      freeCache(run.cache);
      freeModel(run.model);
      await run.anchor?.close();
    }
    if (runs.length > 1) results.ratios = ratios(runs.map((r) => [r.dtype, r.best as Measured]));
    const out = dtypes.length === 1 ? results[dtypes[0]] : results;
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } finally {
    if (tmp !== null) rmSync(tmp, { recursive: true, force: true });
  }
}

/** The anchor's figures and ours/llama.cpp ratios, or why there are none. */
function anchorResult(run: Run, ours: Measured): Record<string, unknown> {
  const a = run.anchorBest;
  if (a === null) return { error: run.anchorError ?? 'node-llama-cpp was not run' };
  // `ratio`: decode as the mean over all steps (the headline); `ratios_ours_over_llamacpp`: best 32-step windows.
  const r: Record<string, number> = {};
  const ratio: Record<string, number> = {};
  for (const B of ANCHOR_BATCHES) {
    r[`decode_${B}`] = round(ours.decode[String(B)] / a.decode[String(B)], 2);
    ratio[`decode_${B}`] = round(ours.decodeMean[String(B)] / a.decode_mean[String(B)], 2);
  }
  r.prefill = ratio.prefill = round(ours.prefill / a.prefill_tok_s, 2);
  return {
    engine: run.anchor?.engine,
    threads: run.anchorThreads,
    ...a,
    ratio,
    ratios_ours_over_llamacpp: r,
    ...(run.anchorError !== null ? { error: run.anchorError } : {}),
  };
}

function bestOfAnchor(a: AnchorMeasured, b: AnchorMeasured): AnchorMeasured {
  const max = (x: Record<string, number>, y: Record<string, number>) =>
    Object.fromEntries(Object.keys(x).map((k) => [k, Math.max(x[k], y[k])]));
  return { decode: max(a.decode, b.decode), decode_mean: max(a.decode_mean, b.decode_mean), prefill_tok_s: Math.max(a.prefill_tok_s, b.prefill_tok_s) };
}

interface Measured {
  bandwidth: number;
  decode: Record<string, number>;
  decodeMean: Record<string, number>;
  prefill: number;
}

async function measure(model: ModelHandle, cache: KvCacheHandle, maxBlocks: number, opts: Options): Promise<Measured> {
  const bandwidth = await measureTriadGbps(128 * 1024 * 1024, opts.threads);
  const decode: Record<string, number> = {};
  const decodeMean: Record<string, number> = {};
  for (const B of BATCHES) {
    const r = await decodeThroughput(model, cache, B, opts.prompt, opts.decodeTokens, maxBlocks);
    decode[String(B)] = round(r.best);
    decodeMean[String(B)] = round(r.mean);
  }
  return { bandwidth, decode, decodeMean, prefill: await prefillThroughput(model, cache, opts.prefill, maxBlocks) };
}

function bestOf(a: Measured | null, b: Measured): Measured {
  if (a === null) return b;
  const max = (x: Record<string, number>, y: Record<string, number>) =>
    Object.fromEntries(Object.keys(x).map((k) => [k, Math.max(x[k], y[k])]));
  return {
    bandwidth: Math.max(a.bandwidth, b.bandwidth),
    decode: max(a.decode, b.decode),
    decodeMean: max(a.decodeMean, b.decodeMean),
    prefill: Math.max(a.prefill, b.prefill),
  };
}

/** "later/earlier" for every pair of the dtypes in the order given: decode[B] and prefill throughput ratios. */
function ratios(measured: [BenchDtype, Measured][]): Record<string, Record<string, number>> {
  const out: Record<string, Record<string, number>> = {};
  for (let i = 0; i < measured.length; i++) {
    for (let j = 0; j < i; j++) {
      const [a, ma] = measured[i];
      const [b, mb] = measured[j];
      const r: Record<string, number> = {};
      for (const B of BATCHES) r[`decode_${B}`] = round(ma.decode[String(B)] / mb.decode[String(B)], 2);
      r.prefill = round(ma.prefill / mb.prefill, 2);
      out[`${a}/${b}`] = r;
    }
  }
  return out;
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
