/**
 * Memory of frozen (forward-only) vs trainable models on the SmolLM2-135M shape (seeded random weights): process RSS
 * of a fresh child process per setup, once the models exist (the JS weight maps collected) and after one forward of
 * a B x T batch, with the native side's own account (trainableModelInfo().allocatedBytes) beside it. Setups: the
 * reward model (score head) alone, and a PPO job's models (policy trainable, reference and reward model), each
 * "before" (every model trainable, as all were) and "after" (reference and reward frozen); plus the reward scorer
 * itself (createRewardScorer over a checkpoint, after only: its JS weights must be collectable too).
 * Output (--json): ONE JSON object on stdout, {"shape","params","threads","batch","seq_len","node_baseline_rss_mib",
 * "runs":[{"setup","mode","models":[{"role","frozen","allocated_mib":{params,grads,moments,activations,total}}],
 * "rss_created_mib","rss_after_forward_mib","forward_s"}],"summary":{setup:{before_mib,after_mib,saved_mib}}}.
 * Options: --batch N (4), --seq-len N (128), --threads N. Build and run: npm run bench:frozen-memory -- --json.
 * Not a correctness test (libs/kernels/src/training.frozen.spec.ts is).
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import {
  createTrainableModel,
  expectedWeightShapes,
  freeTrainableModel,
  policyForward,
  scoreStep,
  trainableModelInfo,
  Xorshift32,
  type TrainableModelHandle,
  type TrainBatch,
} from '../libs/kernels/src';
import { createRewardScorer, loadCheckpoint, rewardInputIds, type Checkpoint, type RewardScorer } from '../libs/model/src';
import { positiveInt, randomWeights, SMOLLM2_135M } from './bench.shapes';

const SETUPS = ['reward', 'ppo', 'reward-scorer'] as const;
type Setup = (typeof SETUPS)[number];
type Mode = 'before' | 'after';

interface Options {
  batch: number;
  seqLen: number;
  threads: number | undefined;
  json: boolean;
  child: { setup: Setup | 'none'; mode: Mode } | null;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { batch: 4, seqLen: 128, threads: undefined, json: false, child: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') opts.json = true;
    else if (a === '--batch') opts.batch = positiveInt(argv[++i], '--batch');
    else if (a === '--seq-len') opts.seqLen = positiveInt(argv[++i], '--seq-len');
    else if (a === '--threads') opts.threads = positiveInt(argv[++i], '--threads');
    else if (a === '--child') opts.child = { setup: argv[++i] as Setup | 'none', mode: argv[++i] as Mode };
    else throw new Error(`unknown option ${a}; usage: frozen-memory.bench [--json] [--batch N] [--seq-len N] [--threads N]`);
  }
  return opts;
}

const MIB = 2 ** 20;
const mib = (bytes: number): number => Math.round((10 * bytes) / MIB) / 10;

function randomBatch(B: number, T: number): TrainBatch {
  const rng = new Xorshift32(99);
  const n = B * T;
  const tokens = Int32Array.from({ length: n }, () => rng.nextUint32() % SMOLLM2_135M.vocabSize);
  return { B, T, tokens, mask: new Int32Array(n).fill(1) };
}

/**
 * The setup's models. The weight maps live in this function only and no closure is made here (a closure would keep
 * its scope's maps alive), so they are garbage once it returns.
 */
function createModels(setup: 'reward' | 'ppo', mode: Mode, threads: number | undefined): { role: string; model: TrainableModelHandle }[] {
  const spec = SMOLLM2_135M;
  const base = randomWeights(spec, 7);
  const rewardWeights = new Map(base);
  const score = new Float32Array(spec.hiddenSize);
  for (let i = 0; i < score.length; i++) score[i] = ((i % 7) - 3) / 100;
  rewardWeights.set('score.weight', score);
  const frozen = mode === 'after';
  const reward = { role: 'reward', model: createTrainableModel(spec, rewardWeights, { numLabels: 1, threads, frozen }) };
  if (setup === 'reward') return [reward];
  return [
    { role: 'policy', model: createTrainableModel(spec, base, { threads }) },
    { role: 'reference', model: createTrainableModel(spec, base, { threads, frozen }) },
    reward,
  ];
}

/** The forward a role runs in its job: the scalar head for the reward model, per-token log-probs otherwise. */
function runForward(role: string, model: TrainableModelHandle, batch: TrainBatch): Promise<unknown> {
  if (role === 'reward') return scoreStep(model, batch);
  return policyForward(model, batch, { targets: Int32Array.from(batch.tokens), sel: new Int32Array(batch.B * batch.T).fill(1) });
}

/** The reward service's path: createRewardScorer over a checkpoint (stories260K's tokenizer, 135M-shaped weights). */
async function createScorer(threads: number | undefined): Promise<{ scorer: RewardScorer; tokenizer: Checkpoint['tokenizer'] }> {
  const stories = await loadCheckpoint(path.resolve(__dirname, '..', '..', 'models', 'stories260K'));
  const weights = randomWeights(SMOLLM2_135M, 7);
  weights.set('score.weight', new Float32Array(SMOLLM2_135M.hiddenSize).fill(0.01));
  const scorer = createRewardScorer({ ...stories, spec: SMOLLM2_135M, weights, numLabels: 1 }, { threads });
  return { scorer, tokenizer: stories.tokenizer };
}

/** B text pairs of at most T tokens each (as many words as fit). */
function scorerPairs(tokenizer: Checkpoint['tokenizer'], B: number, T: number): { prompt: string; response: string }[] {
  const text = (k: number) => Array.from({ length: k }, (_, i) => ['the', 'dog', 'ran', 'to', 'a', 'park'][i % 6]).join(' ');
  let k = T;
  while (k > 1 && rewardInputIds({ tokenizer }, 'Story: ', text(k), Infinity).length > T) k--;
  return Array.from({ length: B }, () => ({ prompt: 'Story: ', response: text(k) }));
}

function collectGarbage(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run the child with --expose-gc');
  gc();
  gc();
}

async function child(opts: Options, setup: Setup | 'none', mode: Mode): Promise<void> {
  const rss = () => process.memoryUsage().rss;
  const batch = randomBatch(opts.batch, opts.seqLen);
  const out: Record<string, unknown> = { setup, mode };
  if (setup === 'none') {
    collectGarbage();
    out.rss_created_mib = mib(rss());
  } else if (setup === 'reward-scorer') {
    const { scorer, tokenizer } = await createScorer(opts.threads);
    collectGarbage();
    out.rss_created_mib = mib(rss());
    const pairs = scorerPairs(tokenizer, opts.batch, opts.seqLen);
    const t0 = process.hrtime.bigint();
    await scorer.score(pairs);
    out.forward_s = Number(process.hrtime.bigint() - t0) / 1e9;
    out.rss_after_forward_mib = mib(rss());
    out.models = [{ role: 'reward', frozen: true }];
    scorer.free();
  } else {
    const held = createModels(setup, mode, opts.threads);
    collectGarbage();
    out.rss_created_mib = mib(rss());
    const t0 = process.hrtime.bigint();
    for (const h of held) await runForward(h.role, h.model, batch);
    out.forward_s = Number(process.hrtime.bigint() - t0) / 1e9;
    out.rss_after_forward_mib = mib(rss());
    out.models = held.map((h) => {
      const info = trainableModelInfo(h.model);
      const a = info.allocatedBytes;
      return { role: h.role, frozen: info.frozen, allocated_mib: { params: mib(a.params), grads: mib(a.grads), moments: mib(a.moments), activations: mib(a.activations), total: mib(a.total) } };
    });
    for (const h of held) freeTrainableModel(h.model);
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

function runChild(opts: Options, setup: Setup | 'none', mode: Mode): Record<string, unknown> {
  const args = ['--expose-gc', __filename, '--child', setup, mode, '--batch', String(opts.batch), '--seq-len', String(opts.seqLen)];
  if (opts.threads !== undefined) args.push('--threads', String(opts.threads));
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (r.status !== 0) throw new Error(`child ${setup} ${mode} failed (${r.status ?? r.signal}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

function parent(opts: Options): void {
  const baseline = runChild(opts, 'none', 'after');
  const runs: Record<string, unknown>[] = [];
  for (const setup of SETUPS) {
    for (const mode of setup === 'reward-scorer' ? (['after'] as const) : (['before', 'after'] as const)) {
      process.stderr.write(`frozen-memory: ${setup} ${mode}\n`);
      runs.push(runChild(opts, setup, mode));
    }
  }
  const rssOf = (setup: Setup, mode: Mode) => runs.find((r) => r.setup === setup && r.mode === mode)?.rss_after_forward_mib as number;
  const summary: Record<string, { before_mib: number; after_mib: number; saved_mib: number }> = {};
  for (const setup of ['reward', 'ppo'] as const) {
    const before = rssOf(setup, 'before'), after = rssOf(setup, 'after');
    summary[setup] = { before_mib: before, after_mib: after, saved_mib: Math.round(10 * (before - after)) / 10 };
  }
  const params = [...expectedWeightShapes(SMOLLM2_135M).values()].reduce((n, [rows, cols = 1]) => n + rows * cols, 0);
  const out = {
    shape: 'SmolLM2-135M (random weights)',
    params,
    threads: opts.threads ?? null,
    batch: opts.batch,
    seq_len: opts.seqLen,
    node_baseline_rss_mib: baseline.rss_created_mib,
    runs,
    summary,
  };
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }
  for (const r of runs) {
    process.stdout.write(`${String(r.setup).padEnd(14)} ${String(r.mode).padEnd(7)} RSS ${r.rss_created_mib} MiB created, ${r.rss_after_forward_mib} MiB after a ${opts.batch}x${opts.seqLen} forward\n`);
  }
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.child) await child(opts, opts.child.setup, opts.child.mode);
  else parent(opts);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
