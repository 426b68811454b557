/**
 * Training throughput benchmark: forward+backward tokens/s and MFU of the native training path on
 * models/stories260K and on a SmolLM2-135M-shaped model with seeded random weights, at sequence length 256.
 * Output (--json): ONE JSON object on stdout,
 *   {"threads","peak_gflops","seq_len","models":[{"model","params","batch","seq_len","steps","fwd_bwd_tok_s",
 *    "fwd_bwd_tok_s_mean","optimizer_ms","mfu","mfu_mean"}, ...]}
 * mfu = 6 * params * fwd_bwd_tok_s / peak, peak = f32 FLOP/s of the engine's 256x1024x1024 matmul probe measured in
 * this run (measurePeakFlops, the same probe as `flywheel train sft`); fwd_bwd_tok_s is the best timed step (shared
 * boxes are noisy), _mean the mean over all timed steps. Attention's T^2 FLOPs are not counted (6*N*D convention).
 * Options: --threads N, --seq-len N, --steps N (timed steps of the larger model; the small one runs 4x as many).
 * Build and run: npm run bench:train -- --json. Not a correctness test (see libs/kernels/src/training*.spec.ts).
 */
import path from 'node:path';
import {
  createTrainableModel,
  freeTrainableModel,
  optimizerStep,
  trainableModelInfo,
  trainStep,
  zeroGrad,
  DEFAULT_OPTIMIZER,
  Xorshift32,
} from '../libs/kernels/src';
import type { ModelSpec, WeightMap } from '../libs/kernels/src';
import { loadCheckpoint } from '../libs/model/src';
import { measurePeakFlops } from '../libs/train/src';
import { positiveInt, randomWeights, SMOLLM2_135M } from './bench.shapes';


interface Options {
  threads: number | undefined;
  seqLen: number;
  steps: number;
  json: boolean;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { threads: undefined, seqLen: 256, steps: 3, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') opts.json = true;
    else if (a === '--threads') opts.threads = positiveInt(argv[++i], '--threads');
    else if (a === '--seq-len') opts.seqLen = positiveInt(argv[++i], '--seq-len');
    else if (a === '--steps') opts.steps = positiveInt(argv[++i], '--steps');
    else throw new Error(`unknown option ${a}; usage: train.bench [--json] [--threads N] [--seq-len N] [--steps N]`);
  }
  return opts;
}


interface ModelResult {
  model: string;
  params: number;
  batch: number;
  seq_len: number;
  steps: number;
  fwd_bwd_tok_s: number;
  fwd_bwd_tok_s_mean: number;
  optimizer_ms: number;
  mfu: number;
  mfu_mean: number;
}

async function benchModel(name: string, spec: ModelSpec, weights: WeightMap, B: number, T: number, steps: number, peak: number, threads: number | undefined): Promise<ModelResult> {
  const model = createTrainableModel(spec, weights, { threads });
  try {
    const params = trainableModelInfo(model).numParams;
    const rng = new Xorshift32(12345);
    const rand = (): number => rng.nextUint32() % spec.vocabSize;
    const tokens = Int32Array.from({ length: B * T }, rand);
    const targets = Int32Array.from({ length: B * T }, rand);
    const batch = { B, T, tokens, mask: new Int32Array(B * T).fill(1) };
    const lm = { targets, weights: new Float32Array(B * T).fill(1) };
    const times: number[] = [];
    let optSeconds = 0;
    for (let i = 0; i <= steps; i++) {
      zeroGrad(model);
      const t0 = process.hrtime.bigint();
      await trainStep(model, batch, lm);
      const t1 = process.hrtime.bigint();
      await optimizerStep(model, { ...DEFAULT_OPTIMIZER, lr: 1e-4 });
      const t2 = process.hrtime.bigint();
      if (i === 0) continue; // warm-up: page faults of first-touch activations and moments
      times.push(Number(t1 - t0) / 1e9);
      optSeconds += Number(t2 - t1) / 1e9;
    }
    const best = (B * T) / Math.min(...times);
    const mean = (B * T * times.length) / times.reduce((a, b) => a + b, 0);
    return {
      model: name,
      params,
      batch: B,
      seq_len: T,
      steps,
      fwd_bwd_tok_s: best,
      fwd_bwd_tok_s_mean: mean,
      optimizer_ms: (1000 * optSeconds) / steps,
      mfu: (6 * params * best) / peak,
      mfu_mean: (6 * params * mean) / peak,
    };
  } finally {
    freeTrainableModel(model);
  }
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const peak = measurePeakFlops();
  const stories = await loadCheckpoint(path.resolve(__dirname, '..', '..', 'models', 'stories260K'));
  const small = await benchModel('stories260K', stories.spec, stories.weights, 8, Math.min(opts.seqLen, stories.spec.maxPositionEmbeddings), opts.steps * 4, peak, opts.threads);
  const large = await benchModel('smollm2-135m-shape', SMOLLM2_135M, randomWeights(SMOLLM2_135M, 7), 1, opts.seqLen, opts.steps, peak, opts.threads);
  const out = { threads: opts.threads ?? null, peak_gflops: peak / 1e9, seq_len: opts.seqLen, models: [small, large] };
  if (opts.json) process.stdout.write(`${JSON.stringify(out)}\n`);
  else for (const m of out.models) process.stdout.write(`${m.model}: ${Math.round(m.fwd_bwd_tok_s)} tok/s fwd+bwd, mfu ${m.mfu.toFixed(3)} (peak ${out.peak_gflops.toFixed(1)} GFLOP/s)\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
