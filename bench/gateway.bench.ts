/**
 * Gateway overhead benchmark: the same streaming load sent through the gateway's HTTP API (SSE from
 * /v1/completions) and straight to the policy over NATS (MeshClient.stream on policy.generate), at 1, 8 and 32
 * concurrent closed-loop clients, for stories260K and a SmolLM2-135M-shaped random-weight model (gateway.models).
 * Per path: TTFT, inter-chunk latency (ITL), time to the last token (E2E) p50/p99, tokens per chunk and aggregate
 * tokens/s; the CPU per token of each process on the path (policy, gateway, the bench's nats-server, this client); and
 * the gateway's cost (HTTP − direct, HTTP / direct throughput). One JSON document on stdout, a table on stderr.
 * Self-contained: starts a private nats-server (JetStream), then per model the policy and the gateway from dist/, and
 * stops them. Needs `nats-server` on PATH, or `--nats URL` for a running one.
 * Run: npm run bench:gateway -- --json [--models stories260K,smol135m-shape] [--concurrency 1,8,32]
 *   [--max-tokens N] [--requests N (per level and path; default per model)] [--holdback-chars N] [--nats URL]
 *   [--stream-interval-ms N (the policy's FLYWHEEL_STREAM_INTERVAL_MS; default as configured, 0)]
 *   [--stream-mux on|off (FLYWHEEL_STREAM_MUX of the gateway, and the same for the direct path; default as configured, on)]
 *   [--profile DIR (V8 CPU profiles of the policy and the gateway, written when they stop)]
 * Not a correctness test (see test/gateway.test.ts), though it fails when a request makes other than max_tokens.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import type { NatsConnection } from 'nats';
import { z } from 'zod';
import {
  generateFrameSchema,
  SUBJECTS,
  type completionRequestSchema,
  type GenerateFrame,
  type GenerateRequestInput,
} from '@flywheel/contracts';
import { loadGatewayApiConfig, loadModerationConfig, loadPolicyConfig } from '@flywheel/config';
import { coalesceWrites, connectMesh, MeshClient } from '@flywheel/mesh';
import { benchModelNamed, eosTokenIds, GATEWAY_BENCH_MODELS, type GatewayBenchModel } from './gateway.models';

const ROOT = path.resolve(__dirname, '..', '..');
const API_KEY = 'sk-bench-gateway-0001';
const PROMPT = 'Once upon a time';
/**
 * Warm-up requests are short: they only JIT both paths and touch the weights once. There are enough of them that V8
 * has optimized the gateway's per-token code before the first level: the 135M shape's levels are only 8–32 requests,
 * and with 8 warm-up requests they were measured while it still compiled (gateway CPU per token at 8 clients about
 * 640 µs, against about 370 µs once warm).
 */
const WARMUP_TOKENS = 8;
const DEFAULT_WARMUP_REQUESTS = 64;
const WARMUP_CLIENTS = 8;

interface Options {
  models: GatewayBenchModel[];
  concurrency: number[];
  /** Null: each model's own default. */
  maxTokens: number | null;
  requests: number | null;
  /** Warm-up requests per path before the first level. */
  warmup: number;
  holdbackChars: number | null;
  /** The policy's FLYWHEEL_STREAM_INTERVAL_MS; null = as the environment has it. */
  streamIntervalMs: number | null;
  /** The gateway's FLYWHEEL_STREAM_MUX, also used by the direct path; null = as the environment has it. */
  streamMux: 'on' | 'off' | null;
  nats: string | null;
  /** Folder for V8 CPU profiles of the policy and the gateway (`--cpu-prof`), null: none. */
  profile: string | null;
  json: boolean;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = {
    models: [...GATEWAY_BENCH_MODELS],
    concurrency: [1, 8, 32],
    maxTokens: null,
    requests: null,
    warmup: DEFAULT_WARMUP_REQUESTS,
    holdbackChars: null,
    streamIntervalMs: null,
    streamMux: null,
    nats: null,
    profile: null,
    json: false,
  };
  const int = (flag: string, v: string, min: number) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`${flag} must be an integer ≥ ${min}, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--json') opts.json = true;
    else if (a === '--models') opts.models = next().split(',').map(benchModelNamed);
    else if (a === '--concurrency' || a === '--clients') opts.concurrency = next().split(',').map((c) => int(a, c, 1));
    else if (a === '--max-tokens') opts.maxTokens = int(a, next(), 1);
    else if (a === '--requests') opts.requests = int(a, next(), 1);
    else if (a === '--warmup') opts.warmup = int(a, next(), 0);
    else if (a === '--holdback-chars') opts.holdbackChars = int(a, next(), 0);
    else if (a === '--stream-interval-ms') opts.streamIntervalMs = int(a, next(), 0);
    else if (a === '--stream-mux') opts.streamMux = z.enum(['on', 'off']).parse(next());
    else if (a === '--nats') opts.nats = next();
    else if (a === '--profile') opts.profile = path.resolve(next());
    else throw new Error(`unknown option ${a}`);
  }
  return opts;
}

// ---- processes -------------------------------------------------------------------------------------

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

interface Proc {
  child: ChildProcess;
  output: () => string;
}

function launch(cmd: string, args: string[], env: Record<string, string>): Proc {
  const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return { child, output: () => out };
}

async function until(what: string, timeoutMs: number, probe: () => Promise<boolean>, procs: Proc[]): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const dead = procs.find((p) => p.child.exitCode !== null);
    if (dead) throw new Error(`${what}: a process exited:\n${dead.output()}`);
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function stopAll(procs: Proc[]): Promise<void> {
  await Promise.all(
    procs.map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.child.exitCode !== null || p.child.signalCode !== null) return resolve();
          p.child.once('exit', () => resolve());
          p.child.kill('SIGTERM');
          setTimeout(() => p.child.kill('SIGKILL'), 5000).unref();
        }),
    ),
  );
}

// ---- measurement -----------------------------------------------------------------------------------

/**
 * One streamed request. A chunk is what the client receives at once: a 'tokens' frame with ids (direct), or a
 * socket read holding SSE events with text (HTTP: the gateway writes the events ready in one event-loop turn
 * together, and the client cannot tell apart events that arrive in one read).
 */
interface Sample {
  ttftMs: number;
  /** Gaps between consecutive chunks, ms; one fewer than chunks. */
  chunkGapsMs: number[];
  /** Token ids per chunk; null where the path cannot see them (SSE text carries no ids). */
  tokensPerChunk: number[] | null;
  chunks: number;
  /** SSE events with text (HTTP); null direct. */
  events: number | null;
  tokens: number;
  /** Characters of streamed text. */
  chars: number;
  /** Request sent → last chunk, ms: unlike a per-token figure, not skewed by how tokens are chunked. */
  e2eMs: number;
}

interface PathResult {
  ttft_ms: { p50: number; p99: number };
  /** Per chunk, not per token: a chunk may carry several tokens (see tokens_per_chunk). */
  itl_ms: { p50: number; p99: number };
  /** Request sent → last token. */
  e2e_ms: { p50: number; p99: number };
  /** max is null over HTTP, where only the mean (usage tokens / chunks) is known. */
  tokens_per_chunk: { mean: number; max: number | null };
  /** Streamed text per token: gateway_holdback_chars / chars_per_token ≈ how many tokens HTTP text trails the engine by. */
  chars_per_token: number;
  tok_s: number;
  requests: number;
  tokens: number;
  chunks: number;
  /** SSE events with text (several may share a chunk); null direct. */
  sse_events: number | null;
  /**
   * CPU time (user + system) each process spent per streamed token while this path ran: the policy, the gateway (HTTP's
   * own cost: it idles on the direct path), the bench's nats-server (null with --nats) and this client (its NATS or
   * HTTP reading). On two cores their sum is what one token costs the machine. Null where /proc is not readable.
   */
  cpu_us_per_token: CpuPerToken;
  /**
   * How busy the whole machine was while the path ran (all cores, from /proc/stat; null where unreadable): a path
   * near 100% is bound by CPU, one well below it by a single thread (the policy's, on the direct path) or by latency.
   */
  machine_busy_pct: number | null;
}

/** Seconds of CPU a process has used (Linux /proc/<pid>/stat utime + stime), or null. */
const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();
function cpuSeconds(child: ChildProcess): number | null {
  try {
    const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return null;
  }
}

const CPU_PARTS = ['policy', 'gateway', 'nats', 'client'] as const;
type CpuPart = (typeof CPU_PARTS)[number];
type CpuPerToken = Record<CpuPart, number | null>;
/** The processes whose CPU is counted; nats is null when the bench uses a server it did not start. */
type Services = { policy: ChildProcess; gateway: ChildProcess; nats: ChildProcess | null };

/** The machine's busy and total CPU ticks so far (every core, /proc/stat's first line), or null. */
function machineTicks(): { busy: number; total: number } | null {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = fields.reduce((n, x) => n + x, 0);
    return { busy: total - fields[3]! - fields[4]!, total };
  } catch {
    return null;
  }
}

/** CPU seconds of each part so far; the client is this process. */
function cpuNow(services: Services): CpuPerToken {
  const own = process.cpuUsage();
  return {
    policy: cpuSeconds(services.policy),
    gateway: cpuSeconds(services.gateway),
    nats: services.nats === null ? null : cpuSeconds(services.nats),
    client: (own.user + own.system) / 1e6,
  };
}

/** One load() run, with the CPU seconds each part used during it. */
type Measured = { samples: Sample[]; wallMs: number; cpu: CpuPerToken; machine: { busy: number; total: number } | null };
async function measured(services: Services, run: () => Promise<{ samples: Sample[]; wallMs: number }>): Promise<Measured> {
  const before = cpuNow(services);
  const m0 = machineTicks();
  const r = await run();
  const m1 = machineTicks();
  const after = cpuNow(services);
  const cpu = {} as CpuPerToken;
  for (const k of CPU_PARTS) cpu[k] = before[k] === null || after[k] === null ? null : after[k]! - before[k]!;
  return { ...r, cpu, machine: m0 === null || m1 === null ? null : { busy: m1.busy - m0.busy, total: m1.total - m0.total } };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx]!;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;
const p50p99 = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  return { p50: round3(percentile(sorted, 50)), p99: round3(percentile(sorted, 99)) };
};

function summarize(halves: Measured[]): PathResult {
  const samples = halves.flatMap((h) => h.samples);
  const wallMs = halves.reduce((n, h) => n + h.wallMs, 0);
  const perToken = (part: CpuPart) =>
    halves.some((h) => h.cpu[part] === null) ? null : Math.round((halves.reduce((n, h) => n + h.cpu[part]!, 0) / tokens) * 1e6 * 10) / 10;
  const tokens = samples.reduce((n, s) => n + s.tokens, 0);
  const chunks = samples.reduce((n, s) => n + s.chunks, 0);
  const chars = samples.reduce((n, s) => n + s.chars, 0);
  const perChunk = samples.map((s) => s.tokensPerChunk);
  const known = perChunk.every((c) => c !== null);
  const events = samples.every((s) => s.events !== null) ? samples.reduce((n, s) => n + (s.events ?? 0), 0) : null;
  return {
    ttft_ms: p50p99(samples.map((s) => s.ttftMs)),
    itl_ms: p50p99(samples.flatMap((s) => s.chunkGapsMs)),
    e2e_ms: p50p99(samples.map((s) => s.e2eMs)),
    tokens_per_chunk: {
      mean: round3(tokens / chunks),
      // A loop, not Math.max(...): a long run has more chunks than the call stack holds arguments.
      max: known ? perChunk.reduce<number>((m, c) => (c ?? []).reduce((a, b) => Math.max(a, b), m), 0) : null,
    },
    chars_per_token: round3(chars / tokens),
    tok_s: Math.round((tokens / wallMs) * 1000 * 10) / 10,
    requests: samples.length,
    tokens,
    chunks,
    sse_events: events,
    cpu_us_per_token: Object.fromEntries(CPU_PARTS.map((k) => [k, perToken(k)])) as CpuPerToken,
    machine_busy_pct: halves.some((h) => h.machine === null)
      ? null
      : Math.round((100 * halves.reduce((n, h) => n + h.machine!.busy, 0)) / Math.max(1, halves.reduce((n, h) => n + h.machine!.total, 0))),
  };
}

/** `clients` closed loops share `total` requests; returns every request's sample and the wall time. */
async function load(clients: number, total: number, one: () => Promise<Sample>): Promise<{ samples: Sample[]; wallMs: number }> {
  const samples: Sample[] = [];
  let issued = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (issued < total) {
        issued += 1;
        samples.push(await one());
      }
    }),
  );
  return { samples, wallMs: performance.now() - started };
}

/** Chunk times and token counts of one stream → a Sample; fails unless it made exactly `maxTokens`. */
class StreamClock {
  private readonly sent = performance.now();
  private first = -1;
  private last = -1;
  private readonly gaps: number[] = [];
  private readonly perChunk: number[] = [];
  private chars = 0;
  private text = '';

  /** A chunk arrived at `at` with `text` and (where known) `tokens` ids. */
  chunk(text: string, tokens: number | null, at = performance.now()): void {
    if (this.first < 0) this.first = at;
    else this.gaps.push(at - this.last);
    this.last = at;
    this.chars += text.length;
    this.text += text;
    if (tokens !== null) this.perChunk.push(tokens);
  }

  sample(path: string, tokens: number, maxTokens: number, events: number | null, finishReason: string | null): Sample {
    if (tokens !== maxTokens) {
      throw new Error(`${path}: a request made ${tokens} tokens, not max_tokens ${maxTokens} (finish reason ${finishReason}; text ${JSON.stringify(this.text.slice(-300))})`);
    }
    if (this.first < 0) throw new Error(`${path}: a request streamed ${tokens} tokens but no chunk carried any`);
    return {
      ttftMs: this.first - this.sent,
      chunkGapsMs: this.gaps,
      tokensPerChunk: events === null ? this.perChunk : null,
      chunks: this.gaps.length + 1,
      events,
      tokens,
      chars: this.chars,
      e2eMs: this.last - this.sent,
    };
  }
}

/**
 * Token ids a policy frame carries. Exhaustive over the contract's frame union: a frame type added to it breaks
 * this at compile time, and one arriving unannounced fails the run instead of counting as 0 tokens.
 */
function tokensInFrame(frame: GenerateFrame): number {
  switch (frame.type) {
    case 'start':
    case 'end':
      return 0;
    case 'tokens':
      return frame.tokens.reduce((n, delta) => n + delta.tokenIds.length, 0);
    default: {
      const unknown: never = frame;
      throw new Error(`direct: policy frame of unknown type: ${JSON.stringify(unknown).slice(0, 200)}`);
    }
  }
}

/**
 * The n-th request of either path samples with seed n, so both paths stream the same texts (the output check's cost
 * depends on the text) and a run can be repeated.
 */
const nextSeed = { direct: 0, http: 0 };

function generateRequest(maxTokens: number, eosIds: number[]): GenerateRequestInput {
  return {
    requestId: `bench-${randomUUID()}`,
    input: { kind: 'text', text: PROMPT },
    sampling: { temperature: 1, seed: nextSeed.direct++, maxTokens, logitBias: Object.fromEntries(eosIds.map((id) => [String(id), -100])) },
  };
}

async function directOnce(mesh: MeshClient, maxTokens: number, eosIds: number[], mux: boolean): Promise<Sample> {
  const clock = new StreamClock();
  let tokens = 0;
  let usageTokens: number | null = null;
  let finishReason: string | null = null;
  for await (const frame of mesh.stream(SUBJECTS.policy.generate, generateRequest(maxTokens, eosIds), generateFrameSchema, {
    firstReplyTimeoutMs: 120_000,
    idleTimeoutMs: 60_000,
    mux,
  })) {
    const n = tokensInFrame(frame);
    if (frame.type === 'end') usageTokens = frame.usage.completionTokens;
    if (frame.type === 'tokens') finishReason = frame.tokens.find((d) => d.finishReason !== undefined)?.finishReason ?? finishReason;
    if (n === 0) continue; // start, end, or a choice's finish entry with no ids
    clock.chunk(frame.type === 'tokens' ? frame.tokens.map((d) => d.text).join('') : '', n);
    tokens += n;
  }
  if (usageTokens !== tokens) throw new Error(`direct: counted ${tokens} token ids in frames but the end frame's usage says ${usageTokens}`);
  return clock.sample('direct', tokens, maxTokens, null, finishReason);
}

const sseChunkSchema = z.looseObject({
  choices: z.array(z.looseObject({ text: z.string(), finish_reason: z.string().nullish() })),
  usage: z.looseObject({ completion_tokens: z.number().int() }).nullish(),
});

function httpOnce(agent: http.Agent, port: number, model: string, maxTokens: number, eosIds: number[]): Promise<Sample> {
  const request: z.input<typeof completionRequestSchema> = {
    model,
    prompt: PROMPT,
    max_tokens: maxTokens,
    temperature: 1,
    seed: nextSeed.http++,
    logit_bias: Object.fromEntries(eosIds.map((id) => [String(id), -100])),
    stream: true,
    stream_options: { include_usage: true },
  };
  const body = JSON.stringify(request);
  return new Promise((resolve, reject) => {
    const clock = new StreamClock();
    let tokens = 0;
    let events = 0;
    let finishReason: string | null = null;
    let buffer = '';
    const req = http.request(
      {
        agent,
        host: '127.0.0.1',
        port,
        path: '/v1/completions',
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          return reject(new Error(`HTTP ${res.statusCode}`));
        }
        res.setEncoding('utf8');
        res.on('data', (data: string) => {
          const now = performance.now();
          buffer += data;
          let text = '';
          let withText = 0;
          let cut: number;
          while ((cut = buffer.indexOf('\n\n')) >= 0) {
            const event = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            for (const line of event.split('\n')) {
              if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
              const chunk = sseChunkSchema.parse(JSON.parse(line.slice(6)));
              if (chunk.usage) tokens = chunk.usage.completion_tokens;
              finishReason = chunk.choices[0]?.finish_reason ?? finishReason;
              const delta = chunk.choices[0]?.text ?? '';
              if (delta === '') continue;
              text += delta;
              withText += 1;
            }
          }
          if (withText === 0) return;
          clock.chunk(text, null, now);
          events += withText;
        });
        res.on('end', () => {
          try {
            resolve(clock.sample('http', tokens, maxTokens, events, finishReason));
          } catch (err) {
            reject(err);
          }
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function streamIntervalEnv(opts: Options): Record<string, string> {
  return opts.streamIntervalMs === null ? {} : { FLYWHEEL_STREAM_INTERVAL_MS: String(opts.streamIntervalMs) };
}

function streamMuxEnv(opts: Options): Record<string, string> {
  return opts.streamMux === null ? {} : { FLYWHEEL_STREAM_MUX: opts.streamMux };
}

/** Whether the gateway asks for the stream mux: the direct path does the same, so both pay the same NATS costs. */
function streamMuxOf(opts: Options): boolean {
  return loadGatewayApiConfig({ ...process.env, ...streamMuxEnv(opts) }).streamMux;
}

function holdbackEnv(opts: Options): Record<string, string> {
  return opts.holdbackChars === null ? {} : { FLYWHEEL_MODERATION_STREAM_HOLDBACK_CHARS: String(opts.holdbackChars) };
}

// ---- one model -------------------------------------------------------------------------------------

/** HTTP − direct (ms), and HTTP / direct tokens/s. */
interface Overhead {
  ttft_p50_ms: number;
  ttft_p99_ms: number;
  itl_p50_ms: number;
  itl_p99_ms: number;
  e2e_p50_ms: number;
  e2e_p99_ms: number;
  throughput_ratio: number;
}

interface LevelResult {
  direct: PathResult;
  http: PathResult;
  overhead: Overhead;
}

interface ModelReport {
  about: string;
  served_as: string;
  max_tokens: number;
  eos_ids_banned: number[];
  startup_s: number;
  requests_per_path: Record<string, number>;
  results: Record<string, LevelResult>;
}

const modelListSchema = z.looseObject({ data: z.array(z.looseObject({ id: z.string() })).min(1) });

async function benchModel(
  model: GatewayBenchModel,
  opts: Options,
  natsUrl: string,
  natsServer: ChildProcess | null,
  scratch: string,
  log: (s: string) => void,
): Promise<ModelReport> {
  const started = performance.now();
  const maxTokens = opts.maxTokens ?? model.maxTokens;
  const requests = opts.requests ?? model.requests;
  log(`${model.name}: preparing the checkpoint…`);
  const dir = await model.prepare(scratch);
  const eosIds = await eosTokenIds(dir);
  const stateDir = mkdtempSync(path.join(scratch, 'state-'));
  const env: Record<string, string> = {
    NATS_URL: natsUrl,
    FLYWHEEL_MODEL: dir,
    FLYWHEEL_GATEWAY_PORT: String(await freePort()),
    FLYWHEEL_POLICY_PORT: String(await freePort()),
    FLYWHEEL_API_KEYS: API_KEY,
    FLYWHEEL_RATE_LIMIT_RPM: '0',
    FLYWHEEL_RATE_LIMIT_TPM: '0',
    FLYWHEEL_STATE_DIR: stateDir,
    FLYWHEEL_LOG_LEVEL: 'warn',
    ...holdbackEnv(opts),
    ...streamIntervalEnv(opts),
    ...streamMuxEnv(opts),
  };
  const prof = (service: string) => (opts.profile === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${opts.profile}`, `--cpu-prof-name=${model.name}-${service}.cpuprofile`]);
  const policy = launch(process.execPath, [...prof('policy'), path.join(ROOT, 'dist/apps/policy/src/main.js')], env);
  const gateway = launch(process.execPath, [...prof('gateway'), path.join(ROOT, 'dist/apps/gateway/src/main.js')], env);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  let nc: NatsConnection | null = null;
  try {
    const gatewayPort = Number(env.FLYWHEEL_GATEWAY_PORT);
    let servedAs = '';
    await until(`the gateway serving ${model.name}`, 180_000, async () => {
      const res = await fetch(`http://127.0.0.1:${gatewayPort}/v1/models`, { headers: { authorization: `Bearer ${API_KEY}` } });
      if (res.status !== 200) return false;
      servedAs = modelListSchema.parse(await res.json()).data[0]!.id;
      return true;
    }, [policy, gateway]);
    const startupS = Math.round((performance.now() - started) / 100) / 10;
    // The gateway's connection options and write coalescing, so both paths pay the same for their NATS commands.
    nc = await connectMesh({ servers: [natsUrl], name: 'bench-direct' });
    coalesceWrites(nc);
    const mesh = new MeshClient(nc);
    const mux = streamMuxOf(opts);
    const direct = (n: number) => () => directOnce(mesh, n, eosIds, mux);
    const viaHttp = (n: number) => () => httpOnce(agent, gatewayPort, servedAs, n, eosIds);

    log(`${model.name}: up in ${startupS} s; warming up, then ${maxTokens} tokens per request (EOS ids ${eosIds.join(',')} banned)…`);
    const warmupClients = Math.max(1, Math.min(WARMUP_CLIENTS, opts.warmup));
    await load(warmupClients, opts.warmup, direct(WARMUP_TOKENS));
    await load(warmupClients, opts.warmup, viaHttp(WARMUP_TOKENS));

    const results: Record<string, LevelResult> = {};
    const requestsPerPath: Record<string, number> = {};
    for (const c of opts.concurrency) {
      // Two interleaved halves per path so drift on a shared machine lands on both alike; every client runs
      // at least model.minRounds requests per half.
      const half = Math.max(Math.ceil(requests / 2), c * model.minRounds);
      const services: Services = { policy: policy.child, gateway: gateway.child, nats: natsServer };
      const d1 = await measured(services, () => load(c, half, direct(maxTokens)));
      const h1 = await measured(services, () => load(c, half, viaHttp(maxTokens)));
      const d2 = await measured(services, () => load(c, half, direct(maxTokens)));
      const h2 = await measured(services, () => load(c, half, viaHttp(maxTokens)));
      const d = summarize([d1, d2]);
      const h = summarize([h1, h2]);
      requestsPerPath[String(c)] = half * 2;
      results[String(c)] = {
        direct: d,
        http: h,
        overhead: {
          ttft_p50_ms: round3(h.ttft_ms.p50 - d.ttft_ms.p50),
          ttft_p99_ms: round3(h.ttft_ms.p99 - d.ttft_ms.p99),
          itl_p50_ms: round3(h.itl_ms.p50 - d.itl_ms.p50),
          itl_p99_ms: round3(h.itl_ms.p99 - d.itl_ms.p99),
          e2e_p50_ms: round3(h.e2e_ms.p50 - d.e2e_ms.p50),
          e2e_p99_ms: round3(h.e2e_ms.p99 - d.e2e_ms.p99),
          throughput_ratio: round3(h.tok_s / d.tok_s),
        },
      };
      log(
        `${model.name} c=${c}: TTFT p50 ${d.ttft_ms.p50} → ${h.ttft_ms.p50} ms, ITL p50 ${d.itl_ms.p50} → ${h.itl_ms.p50} ms, ` +
          `${d.tok_s} → ${h.tok_s} tok/s (ratio ${results[String(c)]!.overhead.throughput_ratio}); CPU µs/token ${cpuLine(d.cpu_us_per_token)} → ${cpuLine(h.cpu_us_per_token)}; machine busy ${d.machine_busy_pct}% → ${h.machine_busy_pct}%`,
      );
    }
    return {
      about: model.about,
      served_as: servedAs,
      max_tokens: maxTokens,
      eos_ids_banned: eosIds,
      startup_s: startupS,
      requests_per_path: requestsPerPath,
      results,
    };
  } finally {
    agent.destroy();
    await nc?.drain().catch(() => undefined);
    await stopAll([policy, gateway]);
    rmSync(stateDir, { recursive: true, force: true });
    if (dir.startsWith(scratch)) rmSync(dir, { recursive: true, force: true }); // 0.5 GB for the 135M shape
  }
}

// ---- report ----------------------------------------------------------------------------------------

/** "policy 120 + gateway 140 + nats 60 + client 80 = 400": the parts measured and their sum. */
function cpuLine(cpu: CpuPerToken): string {
  const known = CPU_PARTS.filter((k) => cpu[k] !== null);
  const sum = known.reduce((n, k) => n + cpu[k]!, 0);
  return `${known.map((k) => `${k} ${cpu[k]}`).join(' + ')} = ${Math.round(sum * 10) / 10}`;
}

function table(models: Record<string, ModelReport>): string {
  const head = ['model', 'c', 'path', 'TTFT p50/p99', 'ITL p50/p99', 'E2E p50/p99', 'tok/chunk', 'tok/s', 'CPU µs/tok policy+gateway+nats+client', 'busy'];
  const rows: string[][] = [head];
  const pair = (x: { p50: number; p99: number }) => `${x.p50} / ${x.p99}`;
  const signed = (x: number) => (x >= 0 ? `+${x}` : String(x));
  for (const [name, m] of Object.entries(models)) {
    for (const [c, r] of Object.entries(m.results)) {
      const row = (label: string, p: PathResult) =>
        rows.push([
          name,
          c,
          label,
          pair(p.ttft_ms),
          pair(p.itl_ms),
          pair(p.e2e_ms),
          String(p.tokens_per_chunk.mean),
          String(p.tok_s),
          CPU_PARTS.map((k) => p.cpu_us_per_token[k]).join(' + '),
          p.machine_busy_pct === null ? '' : `${p.machine_busy_pct}%`,
        ]);
      row('direct', r.direct);
      row('http', r.http);
      const o = r.overhead;
      rows.push([
        name,
        c,
        'http−direct',
        `${signed(o.ttft_p50_ms)} / ${signed(o.ttft_p99_ms)}`,
        `${signed(o.itl_p50_ms)} / ${signed(o.itl_p99_ms)}`,
        `${signed(o.e2e_p50_ms)} / ${signed(o.e2e_p99_ms)}`,
        '',
        `ratio ${o.throughput_ratio}`,
        '',
        '',
      ]);
    }
  }
  const widths = head.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const started = performance.now();
  const procs: Proc[] = [];
  const scratch = mkdtempSync(path.join(tmpdir(), 'flywheel-bench-gateway-'));
  try {
    let natsUrl = opts.nats;
    let natsServer: ChildProcess | null = null;
    if (!natsUrl) {
      const port = await freePort();
      const nats = launch('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', path.join(scratch, 'nats')], {});
      procs.push(nats);
      natsServer = nats.child;
      natsUrl = `nats://127.0.0.1:${port}`;
      await until('nats-server', 10_000, async () => /Server is ready/.test(nats.output()), [nats]);
    }
    const models: Record<string, ModelReport> = {};
    for (const model of opts.models) models[model.name] = await benchModel(model, opts, natsUrl, natsServer, scratch, log);
    const report = {
      bench: 'gateway',
      prompt: PROMPT,
      concurrency: opts.concurrency,
      // The gateway holds this many streamed characters back for the output check: HTTP's first chunk waits for them.
      gateway_holdback_chars: loadModerationConfig({ ...process.env, ...holdbackEnv(opts) }).stream.holdbackChars,
      // The policy's frame pacing: 0 sends a frame per step; N holds frames after a request's first to one per N ms.
      policy_stream_interval_ms: loadPolicyConfig({ ...process.env, ...streamIntervalEnv(opts) }).policy.streamIntervalMs,
      // On: one NATS message per engine step carries every stream's frames (to the gateway, and to the direct client).
      stream_mux: streamMuxOf(opts),
      host: { cpus: cpus().length, node: process.version },
      wall_s: Math.round((performance.now() - started) / 100) / 10,
      models,
    };
    log(table(models));
    process.stdout.write(`${JSON.stringify(report, null, opts.json ? 0 : 2)}\n`);
  } finally {
    await stopAll(procs);
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`gateway bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
