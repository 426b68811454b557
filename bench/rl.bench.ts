/**
 * The reward-per-KL frontier of the RL trainers, side by side in one run: PPO, GRPO and RLOO (REINFORCE++ on request)
 * from models/stories260K with the same seed and the same budget (64 sampled responses per step, `--steps` steps), on
 * two tasks:
 *   preference  the RLHF demo's happy-ending pairs (scripts/demo/happy-endings.ts): a reward model is trained on 64
 *               of them first (as the loop's reward-train stage does), and its score is the reward; the gain is in
 *               the first step's reward standard deviations;
 *   verifiable  "Tell me a story about <Name>.": 1 point when the story names <Name>, 1 when it ends with a period and
 *               has no ! or ? (a finished plain sentence); the figure is the share of checks passed (the base model
 *               almost never does both, so a pass rate of both would start at zero), the pass rate is reported too.
 * Per algorithm: the curve (step, KL to the reference in nats per sequence, reward, gain or pass rate), the best gain
 * (or pass-rate ratio) at KL ≤ 1, 2 and 4 nats, and wall time. The KL and rewards are the training rollouts' (each
 * step samples fresh responses from the current policy), not a held-out eval. One JSON document on stdout, a table on
 * stderr, and one SVG per task (gain against KL) in --out.
 * Run: npm run bench:rl -- --json [--steps 8] [--tasks preference,verifiable] [--algorithms ppo,grpo,rloo,rft] [--out DIR]
 *      [--threads N] [--overrides '{"grpo": {"lr": 5e-4}}']. A measurement, not a test.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GRPO_ALGORITHMS } from '../libs/contracts/src';
import { createRewardScorer, loadCheckpoint } from '../libs/model/src';
import { runGrpo, runPpo, type GroupAlgorithm } from '../libs/rl/src';
import { runRewardTraining } from '../libs/train/src';
import { happyEndingPreferences } from '../scripts/demo/happy-endings';

const MODEL = path.resolve(__dirname, '..', '..', 'models', 'stories260K');
const ALGORITHMS = ['ppo', ...GRPO_ALGORITHMS] as const;
type Algorithm = (typeof ALGORITHMS)[number];
type Task = 'preference' | 'verifiable';
const KL_BUDGETS = [1, 2, 4];
const ROLLOUTS_PER_STEP = 64;
const GROUP = 4;
const MAX_NEW_TOKENS = 48;
const SEED = 7;

interface Options {
  steps: number;
  tasks: Task[];
  algorithms: Algorithm[];
  out: string;
  threads: number | undefined;
  json: boolean;
  /** Config overrides per algorithm name, e.g. {"grpo": {"lr": 5e-4}} (merged over the bench's own settings). */
  overrides: Record<string, Record<string, unknown>>;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { steps: 8, tasks: ['preference', 'verifiable'], algorithms: ['ppo', 'grpo', 'rloo', 'rft'], out: path.join(os.tmpdir(), 'flywheel-bench-rl'), threads: undefined, json: false, overrides: {} };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    switch (argv[i]) {
      case '--steps':
        o.steps = Number(v);
        i++;
        break;
      case '--tasks':
        o.tasks = v.split(',') as Task[];
        i++;
        break;
      case '--algorithms':
        o.algorithms = v.split(',') as Algorithm[];
        i++;
        break;
      case '--out':
        o.out = path.resolve(v);
        i++;
        break;
      case '--threads':
        o.threads = Number(v);
        i++;
        break;
      case '--json':
        o.json = true;
        break;
      case '--overrides':
        o.overrides = JSON.parse(v) as Options['overrides'];
        i++;
        break;
      default:
        throw new Error(`unknown option ${argv[i]}`);
    }
  }
  if (!Number.isInteger(o.steps) || o.steps < 1) throw new Error('--steps must be a positive integer');
  for (const t of o.tasks) if (t !== 'preference' && t !== 'verifiable') throw new Error(`unknown task ${t}`);
  for (const a of o.algorithms) if (!ALGORITHMS.includes(a)) throw new Error(`unknown algorithm ${a} (${ALGORITHMS.join(', ')})`);
  return o;
}

const log = (msg: string) => process.stderr.write(`[bench:rl] ${msg}\n`);
const r3 = (x: number) => Number(x.toFixed(3));

interface Point {
  step: number;
  kl: number;
  reward: number;
  /** preference: gain in the first step's reward std; verifiable: pass rate. */
  figure: number;
}

interface TaskSetup {
  prompts: { role: 'user'; content: string }[][];
  references?: Array<{ name: string }>;
  score: (pairs: { prompt: { role: string; content: string }[]; response: string }[]) => Promise<number[]>;
  /** The figure of the batch just scored (pass rate), or null to derive it from rewards (gain in std). */
  lastFigure: () => number | null;
  close(): void;
}

async function preferenceTask(work: string, threads: number | undefined): Promise<TaskSetup> {
  const prefs = happyEndingPreferences(80);
  const rmDir = path.join(work, 'rm');
  log('training the reward model on 64 happy-ending pairs (16 held out)');
  const rm = await runRewardTraining({
    modelDir: MODEL,
    data: { text: prefs.map((p) => JSON.stringify(p)).join('\n'), source: 'happy-endings' },
    outDir: rmDir,
    steps: 60,
    lr: 3e-3,
    batchSize: 8,
    heldout: 0.2,
    seed: 0,
    threads,
  });
  log(`reward model held-out accuracy ${rm.heldoutAccuracy.toFixed(3)}`);
  const scorer = createRewardScorer(await loadCheckpoint(rmDir), { threads });
  return {
    prompts: [...new Map(prefs.map((p) => [p.prompt[0].content, p.prompt])).values()],
    score: (pairs) => scorer.score(pairs.map((p) => ({ prompt: p.prompt as { role: 'user'; content: string }[], response: p.response }))),
    lastFigure: () => null,
    close: () => scorer.free(),
  };
}

/** Pass rates (both checks) of every verifiable batch scored, in order. */
const passRates: number[] = [];

function verifiableTask(): TaskSetup {
  const names = ['Lily', 'Tom', 'Sue', 'Ben', 'Mia', 'Max', 'Anna', 'Sam', 'Lucy', 'Tim', 'Jack', 'Emma', 'Zoe', 'Leo', 'Ruby', 'Finn'];
  let passRate = 0;
  const byPrompt = new Map(names.map((n) => [`Tell me a story about ${n}.`, n]));
  let last = 0;
  return {
    prompts: [...byPrompt.keys()].map((content) => [{ role: 'user' as const, content }]),
    score: async (pairs) => {
      let passed = 0;
      let checks = 0;
      const scores = pairs.map((p) => {
        const name = byPrompt.get(p.prompt[p.prompt.length - 1].content) ?? '';
        const text = p.response.trim();
        const names = new RegExp(`\\b${name}\\b`).test(text) ? 1 : 0;
        const periods = text.endsWith('.') && !/[!?]/.test(text) ? 1 : 0;
        if (names && periods) passed++;
        checks += names + periods;
        return names + periods;
      });
      last = checks / (2 * pairs.length);
      passRate = passed / pairs.length;
      passRates.push(passRate);
      return scores;
    },
    lastFigure: () => last,
    close: () => undefined,
  };
}

async function runOne(task: TaskSetup, algorithm: Algorithm, steps: number, work: string, threads: number | undefined, overrides: Record<string, unknown> = {}): Promise<{ points: Point[]; seconds: number; passRates?: number[] }> {
  const figures: number[] = [];
  const passFrom = passRates.length;
  const score = async (pairs: { prompt: { role: string; content: string }[]; response: string }[]) => {
    const s = await task.score(pairs);
    const f = task.lastFigure();
    if (f !== null) figures.push(f);
    return s;
  };
  const outDir = path.join(work, `${algorithm}-${Math.random().toString(36).slice(2)}`);
  const started = Date.now();
  let history: { step: number; kl: number; reward_mean: number; reward_std: number }[];
  if (algorithm === 'ppo') {
    const r = await runPpo({
      policyDir: MODEL,
      prompts: task.prompts,
      score,
      outDir,
      threads,
      config: { steps, rolloutBatch: ROLLOUTS_PER_STEP, maxNewTokens: MAX_NEW_TOKENS, seed: SEED, checkpointEvery: 0, ...overrides },
    });
    history = r.history;
  } else {
    const r = await runGrpo({
      policyDir: MODEL,
      prompts: task.prompts,
      score,
      outDir,
      threads,
      config: { algorithm: algorithm as GroupAlgorithm, steps, promptsPerStep: ROLLOUTS_PER_STEP / GROUP, groupSize: GROUP, maxNewTokens: MAX_NEW_TOKENS, seed: SEED, checkpointEvery: 0, ...overrides },
    });
    history = r.history;
  }
  rmSync(outDir, { recursive: true, force: true });
  const base = history[0];
  const points = history.map((m, i) => ({
    step: m.step,
    kl: r3(m.kl),
    reward: r3(m.reward_mean),
    figure: r3(figures.length > 0 ? figures[i] : (m.reward_mean - base.reward_mean) / (base.reward_std || 1)),
  }));
  const passes = passRates.slice(passFrom).map(r3);
  return { points, seconds: (Date.now() - started) / 1000, ...(passes.length ? { passRates: passes } : {}) };
}

/** The best figure among steps within each KL budget (verifiable: the share of checks passed over the first step's). */
function frontier(points: Point[], task: Task): Record<string, number | null> {
  const base = points[0].figure;
  return Object.fromEntries(
    KL_BUDGETS.map((k) => {
      const within = points.filter((p) => p.kl <= k).map((p) => (task === 'verifiable' ? (base > 0 ? p.figure / base : null) : p.figure)).filter((x): x is number => x !== null);
      return [`kl_le_${k}`, within.length ? r3(Math.max(...within)) : null];
    }),
  );
}

function svg(task: Task, runs: Record<string, Point[]>): string {
  const W = 560, H = 360, pad = 48;
  const all = Object.values(runs).flat();
  const maxKl = Math.max(4, ...all.map((p) => p.kl));
  const ys = all.map((p) => p.figure);
  const [minY, maxY] = [Math.min(0, ...ys), Math.max(0.1, ...ys)];
  const x = (kl: number) => pad + ((W - 2 * pad) * Math.max(0, kl)) / maxKl;
  const y = (v: number) => H - pad - ((H - 2 * pad) * (v - minY)) / (maxY - minY || 1);
  const colors = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];
  const lines = Object.entries(runs).map(([name, pts], i) => {
    const d = pts.map((p) => `${x(p.kl).toFixed(1)},${y(p.figure).toFixed(1)}`).join(' ');
    return `<polyline fill="none" stroke="${colors[i % colors.length]}" stroke-width="2" points="${d}"/><text x="${W - pad - 90}" y="${pad + 16 * i}" fill="${colors[i % colors.length]}" font-size="12">${name}</text>`;
  });
  const label = task === 'preference' ? 'reward gain (first step std)' : 'share of checks passed';
  const budgets = KL_BUDGETS.map((k) => `<line x1="${x(k)}" x2="${x(k)}" y1="${pad}" y2="${H - pad}" stroke="#ccc" stroke-dasharray="4"/><text x="${x(k) + 2}" y="${H - pad - 4}" font-size="10" fill="#888">${k}</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${pad}" y="20" font-size="14">${task}: ${label} against KL to the reference (nats per sequence)</text>
<line x1="${pad}" y1="${H - pad}" x2="${W - pad}" y2="${H - pad}" stroke="black"/><line x1="${pad}" y1="${pad}" x2="${pad}" y2="${H - pad}" stroke="black"/>
<text x="${W / 2}" y="${H - 12}" font-size="12">KL (nats)</text><text x="6" y="${pad - 8}" font-size="12">${minY.toFixed(2)}…${maxY.toFixed(2)}</text>
${budgets.join('\n')}
${lines.join('\n')}
</svg>
`;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const work = mkdtempSync(path.join(os.tmpdir(), 'flywheel-rl-bench-'));
  mkdirSync(o.out, { recursive: true });
  const report: Record<string, unknown> = { overrides: o.overrides, model: 'stories260K', steps: o.steps, rollouts_per_step: ROLLOUTS_PER_STEP, group_size: GROUP, max_new_tokens: MAX_NEW_TOKENS, seed: SEED, threads: o.threads ?? os.cpus().length, tasks: {} };
  try {
    for (const task of o.tasks) {
      const setup = task === 'preference' ? await preferenceTask(work, o.threads) : verifiableTask();
      const runs: Record<string, Point[]> = {};
      const results: Record<string, unknown> = {};
      try {
        for (const algorithm of o.algorithms) {
          log(`${task}: ${algorithm}, ${o.steps} steps`);
          const r = await runOne(setup, algorithm, o.steps, work, o.threads, o.overrides[algorithm]);
          runs[algorithm] = r.points;
          results[algorithm] = { frontier: frontier(r.points, task), seconds: r3(r.seconds), curve: r.points, ...(r.passRates ? { pass_rate: r.passRates } : {}) };
          const last = r.points[r.points.length - 1];
          log(`${task}: ${algorithm} done in ${r.seconds.toFixed(0)} s; last step KL ${last.kl}, ${task === 'preference' ? 'gain' : 'pass rate'} ${last.figure}; frontier ${JSON.stringify(frontier(r.points, task))}`);
        }
      } finally {
        setup.close();
      }
      const file = path.join(o.out, `rl-frontier-${task}.svg`);
      writeFileSync(file, svg(task, runs));
      (report.tasks as Record<string, unknown>)[task] = { figure: task === 'preference' ? 'reward gain in first-step std' : 'share of checks passed, as a ratio to the first step', svg: file, algorithms: results };
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  if (o.json) process.stdout.write(`${JSON.stringify(report)}\n`);
  for (const [task, t] of Object.entries(report.tasks as Record<string, { algorithms: Record<string, { frontier: Record<string, number | null>; seconds: number }> }>)) {
    for (const [a, r] of Object.entries(t.algorithms)) log(`${task.padEnd(10)} ${a.padEnd(12)} ${KL_BUDGETS.map((k) => `KL≤${k}: ${r.frontier[`kl_le_${k}`] ?? '-'}`).join('  ')}  ${r.seconds} s`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:rl: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
