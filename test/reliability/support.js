/**
 * Shared plumbing of the reliability suite (required by reliability.js and its phase modules): the run's
 * settings and keys, the one summary object and its check/5xx bookkeeping, the seeded RNG, child processes
 * (spawn, stop, crash accounting), waiting, the HTTP client to the gateway (plain and streaming), a worker pool,
 * and the end of every run (process logs, the key-leak check, the JSON line, the exit code).
 * It runs no phase and boots nothing by itself. Values that phases change after start-up (the gateway port,
 * the completion id and the admin session) live in the exported `state` object so every module sees them.
 */
'use strict';
const { spawn } = require('node:child_process');
const { createServer } = require('node:net');
const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');

const repoRoot = path.resolve(__dirname, '..', '..');
const SEED = Number(process.env.RELIABILITY_SEED || 20261128);
const FUZZ_N = Number(process.env.RELIABILITY_FUZZ_N || 10000);
const LOAD_CLIENTS = Number(process.env.RELIABILITY_LOAD_CLIENTS || 200);
const LOAD_S = Number(process.env.RELIABILITY_LOAD_S || 60);
const PG_ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL || 'postgresql://postgres@127.0.0.1:5432/postgres';
const GENERATE_TIMEOUT_MS = 4000;
const REDIS_JOB_STEPS = 60; // the sft job of the Redis fault: long enough to be mid-job when Redis goes
const HARD_DEADLINE = Date.now() + 15 * 60_000; // the whole suite never runs longer than this
const ONLY = new Set((process.env.RELIABILITY_ONLY || '').split(',').map((s) => s.trim()).filter(Boolean));
const phase = (name) => ONLY.size === 0 || ONLY.has(name);
const LOG_DIR = process.env.RELIABILITY_LOG_DIR || '';

const USER_KEY = `sk-rel-user-${crypto.randomBytes(12).toString('hex')}`;
const ADMIN_KEY = `adm-rel-${crypto.randomBytes(12).toString('hex')}`;
const WRONG_KEY = `sk-rel-wrong-${crypto.randomBytes(12).toString('hex')}`;

const summary = {
  seed: SEED,
  requests_sent: 0,
  '5xx': 0,
  unexpected_5xx: 0,
  crashes: 0,
  hangs: 0,
  records_lost: 0,
  p99_ms_under_load: null,
  checks: {},
  failures: [],
  phases: ONLY.size ? [...ONLY] : 'all',
};
const fivexxSamples = [];

function log(...a) {
  process.stderr.write(`[reliability ${new Date().toISOString().slice(11, 19)}] ${a.join(' ')}\n`);
}
function check(name, ok, detail) {
  summary.checks[name] = ok ? 'pass' : 'FAIL';
  if (!ok) summary.failures.push(detail ? `${name}: ${detail}` : name);
  log(`${ok ? 'PASS' : 'FAIL'} ${name}${detail && !ok ? ` — ${detail}` : ''}`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------- seeded RNG ----------
function mulberry32(a) {
  return () => {
    a |= 0;
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rnd = mulberry32(SEED);
const ri = (n) => Math.floor(rnd() * n);
const pick = (arr) => arr[ri(arr.length)];

// ---------- processes ----------
const procs = [];
async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}
function run(name, cmd, args, env) {
  const child = spawn(cmd, args, { cwd: repoRoot, env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const cap = (d) => {
    out += d.toString();
    if (out.length > 20_000_000) out = out.slice(-10_000_000); // bounded, keeps the tail
  };
  child.stdout.on('data', cap);
  child.stderr.on('data', cap);
  const p = { name, child, output: () => out, expectedExit: false, allOutput: '' };
  p.exited = new Promise((resolve) => child.on('exit', (code, sig) => resolve({ code, sig })));
  p.exited.then(({ code, sig }) => {
    p.allOutput += out;
    if (!p.expectedExit) {
      summary.crashes += 1;
      summary.failures.push(`process ${name} exited unexpectedly (code ${code}, signal ${sig}): ${out.slice(-800)}`);
      log(`CRASH ${name} code=${code} sig=${sig}`);
    }
  });
  procs.push(p);
  return p;
}
async function stopProc(p, signal = 'SIGTERM') {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.expectedExit = true;
  p.child.kill(signal);
  const t = setTimeout(() => p.child.kill('SIGKILL'), 10_000);
  await p.exited;
  clearTimeout(t);
}
async function waitFor(probe, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}
const entry = (svc) => path.join(repoRoot, 'dist', 'apps', svc, 'src', 'main.js');
const alive = (p) => p.child.exitCode === null && p.child.signalCode === null;
function rssKb(pid) {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

// ---------- HTTP ----------
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const state = { gwPort: 0, completionId: null, adminCookie: '', csrf: '' };
/** One raw request; resolves {status, headers, body} or {status: 0, error}. Never rejects. */
function req({ method = 'GET', path: p = '/', headers = {}, body, timeoutMs = 30_000, noAgent = false }) {
  return new Promise((resolve) => {
    summary.requests_sent += 1;
    let done = false;
    const finish = (v) => {
      if (!done) {
        done = true;
        clearTimeout(timer);
        resolve(v);
      }
    };
    let r;
    try {
      r = http.request({ host: '127.0.0.1', port: state.gwPort, method, path: p, headers, agent: noAgent ? false : agent }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => finish({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (e) => finish({ status: res.statusCode, headers: res.headers, body: '', error: String(e) }));
      });
    } catch (e) {
      // node refuses to build this request (invalid method/header chars): not sent at all
      summary.requests_sent -= 1;
      return resolve({ status: -1, error: String(e), notSent: true });
    }
    const timer = setTimeout(() => {
      r.destroy(new Error('client timeout'));
      finish({ status: 0, error: 'timeout', timedOut: true });
    }, timeoutMs);
    r.on('error', (e) => finish({ status: 0, error: String(e) }));
    if (body !== undefined) r.write(body);
    r.end();
  });
}
/** Status of one GET to another local service port (readiness probes; not counted in requests_sent). */
function httpStatus(port, p) {
  return new Promise((resolve) => {
    const r = http.get({ host: '127.0.0.1', port, path: p, timeout: 3000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    r.on('timeout', () => r.destroy());
    r.on('error', () => resolve(0));
  });
}
/** The value of one series in Prometheus exposition text whose labels include `labels`; null when absent. */
function metricValue(text, name, labels = {}) {
  for (const line of String(text || '').split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] || '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return null;
}
const bearer = (k) => ({ authorization: `Bearer ${k}` });
const jsonH = (k) => ({ ...bearer(k), 'content-type': 'application/json' });
function record5xx(kind, reqd, res) {
  if (res.status === 503 && String(reqd.path).split('?')[0] === '/healthz') {
    // documented: /healthz answers 503 "degraded" while a service is down; reward and trainer are not started here
    summary.healthz_503_expected = (summary.healthz_503_expected || 0) + 1;
    return;
  }
  if (res.status >= 500) {
    summary['5xx'] += 1;
    summary.unexpected_5xx += 1;
    if (fivexxSamples.length < 50)
      fivexxSamples.push({ kind, method: reqd.method, path: reqd.path, body: String(reqd.body ?? '').slice(0, 300), status: res.status, answer: res.body?.slice(0, 300) });
  }
}

async function pool(n, concurrency, fn) {
  let i = 0;
  const workers = Array.from({ length: concurrency }, async () => {
    while (i < n && Date.now() < HARD_DEADLINE) {
      const k = i++;
      await fn(k);
    }
  });
  await Promise.all(workers);
}

// ---------- streaming client ----------
/** One streaming chat request; classifies how it ended. */
function streamOnce(maxTokens, timeoutMs = 30_000) {
  return new Promise((resolve) => {
    summary.requests_sent += 1;
    const t0 = Date.now();
    let ttft = null;
    let buf = '';
    let status = 0;
    let done = false;
    const finish = (v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ ...v, status, ms: Date.now() - t0, ttft, body: buf.slice(-400) });
    };
    const body = JSON.stringify({ model: 'stories260K', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: maxTokens, stream: true, logit_bias: { 2: -100 } });
    const r = http.request({ host: '127.0.0.1', port: state.gwPort, method: 'POST', path: '/v1/chat/completions', headers: jsonH(USER_KEY), agent }, (res) => {
      status = res.statusCode;
      res.on('data', (c) => {
        if (ttft === null) ttft = Date.now() - t0;
        buf += c.toString();
        if (buf.length > 200_000) buf = buf.slice(-10_000);
      });
      res.on('end', () => {
        if (status !== 200) return finish({ kind: `http_${status}`, retryAfter: res.headers['retry-after'] });
        if (/data: \{"error"/.test(buf)) return finish({ kind: 'error_chunk' });
        if (/data: \[DONE\]/.test(buf)) return finish({ kind: 'ok' });
        finish({ kind: 'truncated' });
      });
      res.on('error', () => finish({ kind: 'reset' }));
    });
    const timer = setTimeout(() => {
      r.destroy();
      summary.hangs += 1;
      finish({ kind: 'hang' });
    }, timeoutMs);
    r.on('error', () => finish({ kind: status ? 'reset' : 'conn_error' }));
    r.end(body);
  });
}
function pct(arr, p) {
  if (!arr.length) return null;
  const s = [...arr].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/** The end of every run: process logs (RELIABILITY_LOG_DIR), the key-leak check, the one JSON line, the exit code. */
function finish(t0) {
  {
    if (LOG_DIR) {
      fs.mkdirSync(LOG_DIR, { recursive: true });
      procs.forEach((p, i) => fs.writeFileSync(path.join(LOG_DIR, `${i}-${p.name}.log`), p.allOutput || p.output()));
    }
    const leaked = [];
    for (const p of procs) {
      const out = p.allOutput || p.output();
      for (const [name, k] of [['user', USER_KEY], ['admin', ADMIN_KEY], ['wrong', WRONG_KEY]]) if (out.includes(k)) leaked.push(`${name} key in ${p.name} output`);
    }
    summary.process_output_bytes = procs.reduce((s, p) => s + (p.allOutput || p.output()).length, 0);
    check('security: keys never appear in any process output', leaked.length === 0, leaked.join('; '));
    summary['5xx_samples'] = fivexxSamples.slice(0, 10);
    summary.seconds = Math.round((Date.now() - t0) / 1000);
    summary.ok = summary.failures.length === 0 && summary.crashes === 0 && summary['5xx'] === 0;
    process.stdout.write(JSON.stringify(summary) + '\n');
    agent.destroy();
    process.exit(summary.ok ? 0 : 1);
  }
}

module.exports = {
  repoRoot, SEED, FUZZ_N, LOAD_CLIENTS, LOAD_S, PG_ADMIN_URL, GENERATE_TIMEOUT_MS, REDIS_JOB_STEPS, HARD_DEADLINE, ONLY, phase, LOG_DIR,
  USER_KEY, ADMIN_KEY, WRONG_KEY, summary, fivexxSamples, state, log, check, sleep, rnd, ri, pick,
  procs, freePort, run, stopProc, waitFor, entry, alive, rssKb, agent, req, httpStatus, metricValue, bearer, jsonH, record5xx, pool,
  streamOnce, pct, finish,
};
