/**
 * The llama.cpp anchor of the engine benchmark: node-llama-cpp (pinned, installed on first use into
 * <repo>/.bench-cache/node-llama-cpp with its prebuilt CPU binaries, outside the project's lockfile) runs the same GGUF
 * as our engine and reports decode tok/s (1 and N parallel sequences, best 32-step window as engine.bench does) and
 * one 512-token prefill. Also makes that GGUF: the weights exactly as the engine stores them for a dtype. Never
 * downloads a model, never builds llama.cpp. Not a correctness check.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { convertWeights, expectedWeightShapes, findRepoRoot, isQuantMix, isQuantType, QUANT_BLOCKS, quantMixTypes } from '../libs/kernels/src';
import type { ModelSpec, QuantTensor, QuantType, ServedDtype, ServingWeightMap } from '../libs/kernels/src';

export const NODE_LLAMA_CPP_VERSION = '3.21.1';
const WINDOW = 32;

/**
 * The matrices the engine would hold for `dtype` (createModel's rule): each in `dtype` when its rows split into its
 * blocks, else q8_0 when they split into 32s, else f32; a mix (q4_k_m) each matrix in its type of the mix; tensors
 * already in that type kept bit for bit; norms f32. f32 / bf16 give f32 (the GGUF writer rounds bf16 itself).
 */
export function engineWeightsFor(spec: ModelSpec, weights: ServingWeightMap, dtype: ServedDtype): Map<string, Float32Array | QuantTensor> {
  if (isQuantMix(dtype)) return convertWeights(weights, quantMixTypes(spec, dtype));
  const targets = new Map<string, QuantType | 'f32'>();
  for (const [name, [, cols = 1]] of expectedWeightShapes(spec)) {
    if (!weights.has(name)) throw new Error(`missing tensor ${name}`);
    targets.set(name, !isQuantType(dtype) || cols === 1 ? 'f32' : cols % QUANT_BLOCKS[dtype].elems === 0 ? dtype : cols % 32 === 0 ? 'q8_0' : 'f32');
  }
  return convertWeights(weights, targets);
}

export interface AnchorMeasured {
  decode: Record<string, number>;
  decode_mean: Record<string, number>;
  prefill_tok_s: number;
}

// The few node-llama-cpp calls used, typed by hand: the package is not a dependency of the project.
export interface NlcSequence {
  evaluate(tokens: number[], options: { temperature: number; yieldEogToken: boolean }): AsyncGenerator<number, void, number | undefined>;
  evaluateWithoutGeneratingNewTokens(tokens: number[]): Promise<void>;
  clearHistory(): Promise<void>;
}
export interface NlcContext {
  getSequence(): NlcSequence;
  dispose(): Promise<void>;
}
export interface NlcModel {
  createContext(options: Record<string, unknown>): Promise<NlcContext>;
  dispose(): Promise<void>;
}
export interface NlcLlama {
  loadModel(options: Record<string, unknown>): Promise<NlcModel>;
  llamaCppRelease?: { release: string };
  dispose(): Promise<void>;
}
export interface NlcModule {
  getLlama(options: Record<string, unknown>): Promise<NlcLlama>;
}

/** Installs the pinned node-llama-cpp if missing (npm registry only; --ignore-scripts: no binary download or build). */
function ensureInstalled(): string {
  const root = findRepoRoot(__dirname) ?? findRepoRoot(process.cwd());
  if (root === null) throw new Error('cannot find the flywheel repository root for .bench-cache/');
  const dir = path.join(root, '.bench-cache', 'node-llama-cpp');
  const pkg = path.join(dir, 'node_modules', 'node-llama-cpp', 'package.json');
  const installed = existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { version?: string }).version === NODE_LLAMA_CPP_VERSION;
  if (!installed) {
    process.stderr.write(`installing node-llama-cpp@${NODE_LLAMA_CPP_VERSION} into ${dir}\n`);
    execFileSync('npm', ['i', '-E', `node-llama-cpp@${NODE_LLAMA_CPP_VERSION}`, '--prefix', dir, '--ignore-scripts', '--no-audit', '--no-fund'], {
      stdio: ['ignore', process.stderr, process.stderr],
    });
  }
  return path.join(dir, 'node_modules', 'node-llama-cpp', 'dist', 'index.js');
}

// TypeScript compiles import() to require() under CommonJS, which cannot load an ES module.
const importEsm = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<unknown>;

/** The pinned node-llama-cpp module, installed into .bench-cache on first use. */
export async function loadNodeLlamaCpp(): Promise<NlcModule> {
  return (await importEsm(pathToFileURL(ensureInstalled()).href)) as NlcModule;
}

/** One llama.cpp model and a context of `sequences` sequences, measured like engine.bench measures ours. */
export class LlamaCppAnchor {
  private constructor(
    private readonly llama: NlcLlama,
    private readonly model: NlcModel,
    private readonly context: NlcContext,
    private readonly sequences: NlcSequence[],
    private readonly vocab: number,
    readonly engine: string,
  ) {}

  static async open(ggufFile: string, opts: { threads: number; contextSize: number; sequences: number; batchSize: number; vocab: number }): Promise<LlamaCppAnchor> {
    const nlc = await loadNodeLlamaCpp();
    const llama = await nlc.getLlama({
      gpu: false,
      build: 'never',
      progressLogs: false,
      maxThreads: opts.threads,
      logLevel: 'error',
      // Our stdout is the benchmark's one JSON object.
      logger: (level: string, message: string) => process.stderr.write(`[llama.cpp ${level}] ${message}\n`),
    });
    // Read into memory as our engine does, so no measured step pays page faults.
    const model = await llama.loadModel({ modelPath: ggufFile, gpuLayers: 0, useMmap: false });
    const context = await model.createContext({
      contextSize: opts.contextSize,
      sequences: opts.sequences,
      batchSize: opts.batchSize,
      threads: { ideal: opts.threads, min: opts.threads },
    });
    const sequences = Array.from({ length: opts.sequences }, () => context.getSequence());
    const release = llama.llamaCppRelease?.release;
    return new LlamaCppAnchor(llama, model, context, sequences, opts.vocab, `node-llama-cpp ${NODE_LLAMA_CPP_VERSION}${release ? ` (llama.cpp ${release})` : ''}`);
  }

  async measure(opts: { batches: number[]; prompt: number; decodeTokens: number; prefill: number }): Promise<AnchorMeasured> {
    const decode: Record<string, number> = {};
    const decodeMean: Record<string, number> = {};
    for (const B of opts.batches) {
      const r = await this.decode(B, opts.prompt, opts.decodeTokens);
      decode[String(B)] = round(r.best);
      decodeMean[String(B)] = round(r.mean);
    }
    return { decode, decode_mean: decodeMean, prefill_tok_s: round(await this.prefillThroughput(opts.prefill)) };
  }

  /**
   * B sequences each take a `prompt`-token prompt, then `steps` tokens we choose (the sampled token is replaced, so
   * an end-of-text never stops a stream); node-llama-cpp batches the B sequences' steps into one llama_decode.
   */
  private async decode(B: number, prompt: number, steps: number): Promise<{ best: number; mean: number }> {
    let tok = 1;
    const nextToken = (): number => (tok = (tok * 1103515245 + 12345) % this.vocab);
    const stamps: number[] = [];
    await Promise.all(
      this.sequences.slice(0, B).map(async (seq, b) => {
        await seq.clearHistory();
        const gen = seq.evaluate(Array.from({ length: prompt }, nextToken), { temperature: 0, yieldEogToken: true });
        await gen.next(); // prompt prefill and first sample
        if (b === 0) stamps.push(now());
        for (let step = 0; step < steps; step++) {
          const r = await gen.next(nextToken());
          if (r.done === true) throw new Error('llama.cpp sequence ended early');
          if (b === 0) stamps.push(now());
        }
        await gen.return(undefined);
      }),
    );
    let best = 0;
    for (let end = WINDOW; end < stamps.length; end += WINDOW) best = Math.max(best, (B * WINDOW) / (stamps[end] - stamps[end - WINDOW]));
    const mean = (B * steps) / (stamps[stamps.length - 1] - stamps[0]);
    return { best: best === 0 ? mean : best, mean };
  }

  /** Best of 2 of one T-token prefill (llama-bench's pp512), from an empty sequence. */
  private async prefillThroughput(T: number): Promise<number> {
    const tokens = Array.from({ length: T }, (_, i) => (i * 7919 + 13) % this.vocab);
    let best = 0;
    for (let rep = 0; rep < 2; rep++) {
      await this.sequences[0].clearHistory();
      const started = now();
      await this.sequences[0].evaluateWithoutGeneratingNewTokens(tokens);
      best = Math.max(best, T / (now() - started));
    }
    return best;
  }

  async close(): Promise<void> {
    await this.context.dispose();
    await this.model.dispose();
    await this.llama.dispose();
  }
}

const round = (x: number): number => Number(x.toFixed(1));

function now(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}
