/**
 * Gateway overhead benchmark: the same streaming load sent through the gateway's HTTP API (SSE from
 * /v1/completions) and straight to the policy over NATS (MeshClient.stream on policy.generate), at
 * 1, 8 and 32 concurrent closed-loop clients. Reports TTFT p50/p99, inter-token latency p50/p99 and
 * aggregate tokens/s for both paths, and the difference (the gateway's cost).
 * Self-contained: starts a private nats-server (JetStream), the policy (stories260K by default) and the
 * gateway from dist/, and stops them. Needs `nats-server` on PATH, or `--nats URL` for a running one.
 * Build and run: npm run build:ts && node dist/bench/gateway.bench.js --json
 * Options: --concurrency 1,8,32  --max-tokens 64  --requests 64 (per level and path)  --nats URL
 * Not a correctness test (see test/gateway.test.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { generateFrameSchema, SUBJECTS, type GenerateRequestInput } from '@flywheel/contracts';
import { MeshClient } from '@flywheel/mesh';

const ROOT = path.resolve(__dirname, '..', '..');
const API_KEY = 'sk-bench-gateway-0001';
const MODEL = 'stories260K';
const PROMPT = 'Once upon a time';
/** stories260K's eos ids, banned so every request generates exactly max_tokens tokens. */
const EOS_IDS = ['1', '2'];

interface Options {
  concurrency: number[];
  maxTokens: number;
  requests: number;
  nats: string | null;
  json: boolean;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { concurrency: [1, 8, 32], maxTokens: 64, requests: 64, nats: null, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--json') opts.json = true;
    else if (a === '--concurrency') opts.concurrency = next().split(',').map(Number);
    else if (a === '--max-tokens') opts.maxTokens = Number(next());
    else if (a === '--requests') opts.requests = Number(next());
    else if (a === '--nats') opts.nats = next();
    else throw new Error(`unknown option ${a}`);
  }
  if (opts.concurrency.some((c) => !Number.isInteger(c) || c < 1)) throw new Error('--concurrency must list positive integers');
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

interface Sample {
  ttftMs: number;
  itlMs: number[];
  tokens: number;
}

interface PathResult {
  ttft_ms: { p50: number; p99: number };
  itl_ms: { p50: number; p99: number };
  tok_s: number;
  requests: number;
  tokens: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx]!;
}

const round3 = (x: number) => Math.round(x * 1000) / 1000;

function summarize(samples: Sample[], wallMs: number): PathResult {
  const ttft = samples.map((s) => s.ttftMs).sort((a, b) => a - b);
  const itl = samples.flatMap((s) => s.itlMs).sort((a, b) => a - b);
  const tokens = samples.reduce((n, s) => n + s.tokens, 0);
  return {
    ttft_ms: { p50: round3(percentile(ttft, 50)), p99: round3(percentile(ttft, 99)) },
    itl_ms: { p50: round3(percentile(itl, 50)), p99: round3(percentile(itl, 99)) },
    tok_s: Math.round((tokens / wallMs) * 1000 * 10) / 10,
    requests: samples.length,
    tokens,
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

function generateRequest(maxTokens: number): GenerateRequestInput {
  return {
    requestId: `bench-${randomUUID()}`,
    input: { kind: 'text', text: PROMPT },
    sampling: { temperature: 1, maxTokens, logitBias: Object.fromEntries(EOS_IDS.map((id) => [id, -100])) },
  };
}

async function directOnce(mesh: MeshClient, maxTokens: number): Promise<Sample> {
  const sent = performance.now();
  let last = 0;
  let ttftMs = -1;
  const itlMs: number[] = [];
  let tokens = 0;
  for await (const frame of mesh.stream(SUBJECTS.policy.generate, generateRequest(maxTokens), generateFrameSchema, {
    firstReplyTimeoutMs: 60_000,
    idleTimeoutMs: 60_000,
  })) {
    if (frame.type !== 'tokens') continue;
    const n = frame.tokens.reduce((sum, d) => sum + d.tokenIds.length, 0);
    if (n === 0) continue;
    const now = performance.now();
    if (ttftMs < 0) ttftMs = now - sent;
    else itlMs.push(now - last);
    last = now;
    tokens += n;
  }
  return { ttftMs, itlMs, tokens };
}

function httpOnce(agent: http.Agent, port: number, maxTokens: number): Promise<Sample> {
  const body = JSON.stringify({
    model: MODEL,
    prompt: PROMPT,
    max_tokens: maxTokens,
    temperature: 1,
    logit_bias: Object.fromEntries(EOS_IDS.map((id) => [id, -100])),
    stream: true,
    stream_options: { include_usage: true },
  });
  return new Promise((resolve, reject) => {
    const sent = performance.now();
    let last = 0;
    let ttftMs = -1;
    const itlMs: number[] = [];
    let tokens = 0;
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
        res.on('data', (chunk: string) => {
          const now = performance.now();
          buffer += chunk;
          let cut: number;
          while ((cut = buffer.indexOf('\n\n')) >= 0) {
            const event = buffer.slice(6, cut);
            buffer = buffer.slice(cut + 2);
            if (event === '[DONE]') continue;
            const parsed = JSON.parse(event) as { choices: Array<{ text: string }>; usage?: { completion_tokens: number } | null };
            if (parsed.usage) tokens = parsed.usage.completion_tokens;
            if (!parsed.choices[0] || parsed.choices[0].text === '') continue;
            if (ttftMs < 0) ttftMs = now - sent;
            else itlMs.push(now - last);
            last = now;
          }
        });
        res.on('end', () => resolve({ ttftMs, itlMs, tokens }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

// ---- main ------------------------------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const procs: Proc[] = [];
  let natsDir: string | null = null;
  let nc: NatsConnection | null = null;
  try {
    let natsUrl = opts.nats;
    if (!natsUrl) {
      const port = await freePort();
      natsDir = mkdtempSync(path.join(tmpdir(), 'flywheel-bench-nats-'));
      const nats = launch('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', natsDir], {});
      procs.push(nats);
      natsUrl = `nats://127.0.0.1:${port}`;
      await until('nats-server', 10_000, async () => /Server is ready/.test(nats.output()), [nats]);
    }
    const stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-bench-state-'));
    const env: Record<string, string> = {
      NATS_URL: natsUrl,
      FLYWHEEL_GATEWAY_PORT: String(await freePort()),
      FLYWHEEL_POLICY_PORT: String(await freePort()),
      FLYWHEEL_API_KEYS: API_KEY,
      FLYWHEEL_RATE_LIMIT_RPM: '0',
      FLYWHEEL_RATE_LIMIT_TPM: '0',
      FLYWHEEL_STATE_DIR: stateDir,
      FLYWHEEL_LOG_LEVEL: 'warn',
    };
    const policy = launch(process.execPath, [path.join(ROOT, 'dist/apps/policy/src/main.js')], env);
    const gateway = launch(process.execPath, [path.join(ROOT, 'dist/apps/gateway/src/main.js')], env);
    procs.push(policy, gateway);
    const gatewayPort = Number(env.FLYWHEEL_GATEWAY_PORT);
    await until('the gateway serving the model', 120_000, async () => {
      const res = await fetch(`http://127.0.0.1:${gatewayPort}/v1/models`, { headers: { authorization: `Bearer ${API_KEY}` } });
      return res.status === 200;
    }, [policy, gateway]);
    nc = await connect({ servers: natsUrl });
    const mesh = new MeshClient(nc);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
    const direct = () => directOnce(mesh, opts.maxTokens);
    const viaHttp = () => httpOnce(agent, gatewayPort, opts.maxTokens);

    log(`warming up (${MODEL}, ${opts.maxTokens} tokens per request)…`);
    await load(4, 8, direct);
    await load(4, 8, viaHttp);

    const results: Record<string, { direct: PathResult; http: PathResult; overhead: Record<string, number> }> = {};
    for (const c of opts.concurrency) {
      const total = Math.max(opts.requests, c * 4);
      // Interleaved halves so drift on a shared machine lands on both paths alike.
      const d1 = await load(c, total / 2, direct);
      const h1 = await load(c, total / 2, viaHttp);
      const d2 = await load(c, total / 2, direct);
      const h2 = await load(c, total / 2, viaHttp);
      const d = summarize([...d1.samples, ...d2.samples], d1.wallMs + d2.wallMs);
      const h = summarize([...h1.samples, ...h2.samples], h1.wallMs + h2.wallMs);
      results[String(c)] = {
        direct: d,
        http: h,
        overhead: {
          ttft_p50_ms: round3(h.ttft_ms.p50 - d.ttft_ms.p50),
          ttft_p99_ms: round3(h.ttft_ms.p99 - d.ttft_ms.p99),
          itl_p50_ms: round3(h.itl_ms.p50 - d.itl_ms.p50),
          itl_p99_ms: round3(h.itl_ms.p99 - d.itl_ms.p99),
          throughput_ratio: round3(h.tok_s / d.tok_s),
        },
      };
      log(
        `c=${c}: TTFT p50 ${d.ttft_ms.p50} → ${h.ttft_ms.p50} ms, ITL p50 ${d.itl_ms.p50} → ${h.itl_ms.p50} ms, ` +
          `${d.tok_s} → ${h.tok_s} tok/s (ratio ${results[String(c)]!.overhead.throughput_ratio})`,
      );
    }
    agent.destroy();
    const report = { model: MODEL, prompt: PROMPT, max_tokens: opts.maxTokens, requests_per_path: opts.requests, results };
    process.stdout.write(`${JSON.stringify(report, null, opts.json ? 0 : 2)}\n`);
    rmSync(stateDir, { recursive: true, force: true });
  } finally {
    await nc?.drain().catch(() => undefined);
    await stopAll(procs);
    if (natsDir) rmSync(natsDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`gateway bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
