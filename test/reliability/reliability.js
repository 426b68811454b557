#!/usr/bin/env node
/**
 * Flywheel reliability suite (`npm run test:reliability`): first the default install on its own processes
 * (phase `embedded`, test/reliability/embedded.js: `npm start`'s launcher with its own state folder, NATS,
 * Redis and embedded Postgres; kill -9 of the database, then of the gateway, under steady writes; nothing
 * answered 200/2xx may be missing from the store; SIGINT stops it all with exit code 0). Then it boots the
 * compiled services from dist/ on a PRIVATE nats-server (and a throwaway Postgres database when one is
 * reachable, else an embedded Postgres of its own: services without DATABASE_URL have no store), and runs,
 * in order: a seeded bad-input fuzzer over every public endpoint, security checks, faults
 * (kill -9 of one of two policy replicas under streaming load, nats-server restart, database outage
 * during feedback load (Postgres server only), kill -9 of a private redis-server under a running trainer
 * `sft` job), the backlog gauges against the admin API, and a streaming load with RSS sampling + a
 * queue-bound (429) check.
 * Prints ONE JSON summary on the last line of stdout and exits 1 when any check failed.
 *
 * Plain JavaScript on purpose: it runs straight from the repository (no ts-jest) and is never matched
 * by the root jest.config.js (`*.test.ts` / `*.spec.ts`). Only 127.0.0.1 is ever targeted.
 * Env: RELIABILITY_SEED (default 20261128), RELIABILITY_FUZZ_N (default 10000),
 *      RELIABILITY_LOAD_CLIENTS (default 200), RELIABILITY_LOAD_S (default 60: a minute of sustained load),
 *      FLYWHEEL_TEST_DATABASE_URL (admin URL of a Postgres; default postgresql://postgres@127.0.0.1:5432/postgres),
 *      RELIABILITY_ONLY (comma list of phases to run, default all: embedded,fuzz,security,kill,nats,db,redis,metrics,load,
 *      queue; for iterating on one fault — a partial run still exits 1 on any failure, but proves only what it ran;
 *      `embedded` alone boots nothing but its own launcher),
 *      RELIABILITY_LOG_DIR (when set, every process's output is written there at the end; they hold no keys).
 */
'use strict';
const { spawn } = require('node:child_process');
const { createServer, connect: netConnect } = require('node:net');
const http = require('node:http');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { runEmbeddedPhase } = require('./embedded');

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
let GW_PORT = 0;
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
      r = http.request({ host: '127.0.0.1', port: GW_PORT, method, path: p, headers, agent: noAgent ? false : agent }, (res) => {
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

// ---------- fuzz generators ----------
const hostileValues = () => [
  null, true, false, 0, -1, 1.5, -0, 1e308, -1e308, 2 ** 53 + 1, Number.MAX_SAFE_INTEGER, 1e-320, 4294967297,
  '', ' ', 'x'.repeat(ri(3) === 0 ? 200_000 : 5000), '\u0000', '\ud800', '\uffff', '🔥'.repeat(1000), '<script>alert(1)</script>',
  "'; DROP TABLE feedback; --", '../../../../etc/passwd', '%s%s%n', '{{7*7}}', '__proto__', [], {}, [[[[]]]], { __proto__: { polluted: 1 } },
  { constructor: { prototype: { x: 1 } } }, Array.from({ length: 2000 }, (_, i) => i), Array.from({ length: 70 }, () => 'a'),
  { role: 'user', content: 'hi' }, [{ role: 'user', content: 'hi' }], [{ type: 'text', text: 'hi' }], [{ type: 'image_url', image_url: { url: 'x' } }],
  'up', 'down', 'rating', 'preference', { chosen: 0, rejected: 0 }, { chosen: -1, rejected: 1e9 }, 16, 17, 4096, 100000,
];
function deepNest(depth, open = '[', close = ']') {
  return open.repeat(depth) + close.repeat(depth);
}
function mutate(obj, depth = 0) {
  if (obj === null || typeof obj !== 'object') return pick(hostileValues());
  const copy = Array.isArray(obj) ? [...obj] : { ...obj };
  const keys = Object.keys(copy);
  const op = ri(6);
  if (op === 0 || keys.length === 0) copy[pick(['__proto__', 'constructor', 'extra_field', 'tools', 'functions', 'suffix', 'n', 'logit_bias', pick(keys.length ? keys : ['x'])])] = pick(hostileValues());
  else if (op === 1) delete copy[pick(keys)];
  else if (op === 2 && depth < 4) {
    const k = pick(keys);
    copy[k] = mutate(copy[k], depth + 1);
  } else copy[pick(keys)] = pick(hostileValues());
  return copy;
}
const templates = {
  chat: () => ({ model: 'stories260K', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 4, stream: rnd() < 0.3, n: 1, temperature: 0.7, stop: ['.'], logprobs: rnd() < 0.3, top_logprobs: 2 }),
  completion: () => ({ model: 'stories260K', prompt: pick(['Once', ['a', 'b'], [1, 2, 3], [[1, 2], [3]]]), max_tokens: 4, stream: rnd() < 0.3, echo: rnd() < 0.5, logprobs: 1, logit_bias: { 5: -100 } }),
  moderation: () => ({ input: pick(['hello', ['a', 'b'], 'I will hurt someone']), model: 'omni-moderation-latest' }),
  feedback: () => ({ completion_id: pick(['chatcmpl-none', `chatcmpl-${crypto.randomBytes(8).toString('hex')}`, COMPLETION_ID || 'chatcmpl-x']), choice_index: 0, kind: pick(['rating', 'thumbs', 'flag', 'correction', 'preference']), value: pick([4, 'up', 'other', 'better', { chosen: 0, rejected: 1 }]), comment: 'c', idempotency_key: `fz-${ri(1e9)}` }),
  session: () => ({ key: pick([ADMIN_KEY, USER_KEY, WRONG_KEY, '', 'x']) }),
  reviews: () => ({ actions: [{ action: pick(['approve', 'reject', 'reset', 'edit', 'choose']), feedback_id: `fb-${ri(1e6)}`, completion_id: COMPLETION_ID, chosen: 0, rejected: 1, text: 'x', note: 'n' }] }),
  exports: () => ({ format: pick(['sft', 'preference', 'kto', 'csv']), filters: { policy_version: 'base', from: pick(['2026-01-01T00:00:00Z', 'yesterday', 1e15]), to: pick(['2030-01-01', null]) } }),
  promote: () => ({ version: pick(['base', 'v1', '../x', '']), model: 'stories260K' }),
};
let COMPLETION_ID = null;
let ADMIN_COOKIE = '';
let CSRF = '';
const endpoints = [
  { method: 'POST', path: '/v1/chat/completions', t: 'chat', scope: 'user' },
  { method: 'POST', path: '/v1/completions', t: 'completion', scope: 'user' },
  { method: 'GET', path: '/v1/models', scope: 'user' },
  { method: 'GET', path: '/v1/models/stories260K', scope: 'user' },
  { method: 'POST', path: '/v1/moderations', t: 'moderation', scope: 'user' },
  { method: 'POST', path: '/v1/feedback', t: 'feedback', scope: 'user' },
  { method: 'GET', path: '/v1/feedback?completion_id=chatcmpl-none', scope: 'user' },
  { method: 'POST', path: '/admin/api/session', t: 'session', scope: 'login' },
  { method: 'GET', path: '/admin/api/session', scope: 'admin' },
  { method: 'GET', path: '/admin/api/inbox', scope: 'admin' },
  { method: 'GET', path: '/admin/api/policy-versions', scope: 'admin' },
  { method: 'GET', path: '/admin/api/completions/chatcmpl-none', scope: 'admin' },
  { method: 'GET', path: '/admin/api/stats', scope: 'admin' },
  { method: 'POST', path: '/admin/api/reviews', t: 'reviews', scope: 'admin' },
  { method: 'POST', path: '/admin/api/exports', t: 'exports', scope: 'admin' },
  { method: 'GET', path: '/admin/api/exports', scope: 'admin' },
  { method: 'GET', path: '/admin/api/exports/exp-none/download', scope: 'admin' },
  { method: 'GET', path: '/admin/api/models', scope: 'admin' },
  { method: 'POST', path: '/admin/api/models/promote', t: 'promote', scope: 'admin' },
  { method: 'POST', path: '/admin/api/models/rollback', t: 'promote', scope: 'admin' },
];
const hostileQueryVals = ['', '-1', '1e400', 'NaN', '999999999999999999999', '%00', '%ff%fe', '%E0%80%AF', 'a'.repeat(5000), '[]', '{"a":1}', 'true', '2026-13-45', '../..', "' OR 1=1 --", '%', '%zz'];
function fuzzQuery(p) {
  const base = p.split('?')[0];
  if (rnd() < 0.5) return p;
  const names = ['view', 'status', 'kind', 'policy_version', 'flagged', 'from', 'to', 'q', 'cursor', 'limit', 'bucket', 'completion_id', 'x'];
  const parts = Array.from({ length: 1 + ri(4) }, () => `${pick(names)}=${pick(hostileQueryVals)}`);
  return `${base}?${parts.join('&')}`;
}
function fuzzPath(p) {
  const r = ri(8);
  if (r === 0) return p.replace(/[^/]+$/, encodeURIComponent(pick(['..', '%2e%2e', 'a'.repeat(3000), '\u0000', '😀', 'chatcmpl-' + 'z'.repeat(500)])));
  if (r === 1) return p + pick(['/', '//', '/..', '/%2e%2e/%2e%2e/etc/passwd', '?', '#x', ';a=b']);
  return p;
}
function authHeaders(scope) {
  const r = rnd();
  if (r < 0.08) return {};
  if (r < 0.12) return bearer(WRONG_KEY);
  if (r < 0.15) return { authorization: pick(['Bearer', 'Bearer ', 'Basic Zm9vOmJhcg==', `bearer ${USER_KEY}`, `Bearer  ${USER_KEY}`, `Bearer ${USER_KEY}x`, 'Bearer ' + 'k'.repeat(9000), `Bearer ${USER_KEY}\u00ff`]) };
  if (r < 0.18) return bearer(scope === 'user' ? ADMIN_KEY : USER_KEY);
  if (scope === 'user') return bearer(USER_KEY);
  if (scope === 'admin') return { cookie: rnd() < 0.05 ? 'flywheel_admin_session=' + 'x'.repeat(100) : ADMIN_COOKIE, 'x-csrf-token': rnd() < 0.1 ? 'bad' : CSRF };
  return {};
}
function bodyFor(ep) {
  const tpl = ep.t ? templates[ep.t]() : {};
  const r = ri(20);
  if (r === 0) return JSON.stringify(tpl).slice(0, ri(JSON.stringify(tpl).length)); // truncated JSON
  if (r === 1) return deepNest(pick([100, 1000, 5000, 50000]), pick(['[', '{"a":', '[{"a":']), '').padEnd(10, ']');
  if (r === 2) return deepNest(pick([64, 512, 4000]));
  if (r === 3) return Buffer.concat([Buffer.from('{"messages":[{"role":"user","content":"'), Buffer.from([0xff, 0xfe, 0xc0, 0xaf, 0xed, 0xa0, 0x80, 0xf8, 0x88]), Buffer.from('"}],"prompt":"\xff","input":"x"}')]);
  if (r === 4) return pick(['', 'null', 'true', '1', '"x"', '[]', '{}', '{"a":1,}', "{'a':1}", 'NaN', '{"a":1e99999}', '\u0000', '{"model":"stories260K","messages":[{"role":"user","content":"hi"}],"max_tokens":1e400}']);
  if (r === 5) return JSON.stringify({ ...tpl, [`k${ri(10)}`]: 'x'.repeat(pick([10_000, 900_000, 1_100_000])) }); // around the body limit
  if (r === 6) return crypto.randomBytes(ri(4096)).toString('latin1');
  if (r === 7) return JSON.stringify(tpl);
  if (r === 8) return '{"a":' + '1'.repeat(5000) + '}';
  let m = tpl;
  for (let i = 0, n = 1 + ri(3); i < n; i++) m = mutate(m);
  // cap generation cost when a mutation happens to be valid
  if (ep.t === 'chat' || ep.t === 'completion') if (typeof m === 'object' && m && !Array.isArray(m) && ri(4) !== 0) m.max_tokens = Math.min(8, Number(m.max_tokens) || 8);
  return JSON.stringify(m);
}
function contentTypeFor() {
  return pick([
    'application/json', 'application/json', 'application/json', 'application/json; charset=utf-8', 'application/json; charset=latin1', 'text/plain', 'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=xyz', 'application/octet-stream', 'application/json; charset=utf-16', 'APPLICATION/JSON', '', 'application/*', 'application/vnd.api+json', 'text/html; x=' + 'y'.repeat(2000),
  ]);
}
function oneFuzz() {
  const r = ri(30);
  if (r === 0) {
    // random method / path
    return { method: pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND', 'FOO']), path: pick(['/', '/v1', '/v2/chat', '/v1/chat/completions/x', '/admin', '/admin/../../etc/passwd', '/admin/%2e%2e/%2e%2e/package.json', '/metrics', '/healthz', '/livez', '/readyz', '/' + 'a'.repeat(ri(8000)), '/v1/models/' + '%ff'.repeat(20), '/admin/assets/..%2f..%2fpackage.json', '/%00', '/v1/feedback/../models']), headers: bearer(USER_KEY) };
  }
  const ep = pick(endpoints);
  const method = ri(15) === 0 ? pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) : ep.method;
  const headers = authHeaders(ep.scope);
  // a DELETE of the session with our cookie + CSRF would log the fuzzer out and turn every later admin case
  // into a 401 (timing-dependent coverage): logout is exercised with a bogus cookie instead
  if (method === 'DELETE' && ep.path.startsWith('/admin/api/session')) headers.cookie = 'flywheel_admin_session=bogus';
  const p = fuzzPath(fuzzQuery(ep.path));
  let body;
  if (method !== 'GET' && method !== 'HEAD') {
    body = bodyFor(ep);
    headers['content-type'] = contentTypeFor();
    if (headers['content-type'] === '') delete headers['content-type'];
  }
  if (ri(40) === 0) headers['x-big'] = 'h'.repeat(pick([4000, 20_000, 70_000])); // oversized headers
  if (ri(30) === 0) headers['x-request-id'] = pick(['', '\t', 'x'.repeat(5000), '../../', 'a\u00ffb']);
  if (ri(60) === 0) headers['content-encoding'] = pick(['gzip', 'br', 'deflate', 'bogus']);
  if (ri(60) === 0) headers['accept'] = 'text/event-stream';
  return { method, path: p, headers, body };
}

async function slowloris(n) {
  // a few slow bodies: announce a length, trickle bytes, then stop; the gateway must not 5xx nor crash
  const results = [];
  await Promise.all(
    Array.from({ length: n }, (_, i) =>
      new Promise((resolve) => {
        const s = netConnect(GW_PORT, '127.0.0.1');
        let answer = '';
        const body = JSON.stringify({ model: 'stories260K', messages: [{ role: 'user', content: 'slow' }], max_tokens: 2 });
        s.on('data', (d) => (answer += d.toString()));
        s.on('error', () => undefined);
        s.on('close', () => resolve(answer));
        s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${USER_KEY}\r\nContent-Type: application/json\r\nContent-Length: ${body.length + (i % 2 ? 50 : 0)}\r\n\r\n`);
        let k = 0;
        const timer = setInterval(() => {
          if (k < Math.min(body.length, 25) && !s.destroyed) s.write(body[k++]);
          else {
            clearInterval(timer);
            if (i % 2 === 0 && !s.destroyed) s.write(body.slice(k)); // completes its body late
            setTimeout(() => s.destroy(), 8000);
          }
        }, 150);
      }).then((a) => results.push(a)),
    ),
  );
  summary.requests_sent += n;
  return results;
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
    const r = http.request({ host: '127.0.0.1', port: GW_PORT, method: 'POST', path: '/v1/chat/completions', headers: jsonH(USER_KEY), agent }, (res) => {
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

// ====================================================================================
async function main() {
  const t0 = Date.now();
  // ---------------- 0. the default install (launcher + embedded Postgres), on its own processes ----------------
  if (phase('embedded')) {
    try {
      await runEmbeddedPhase({ run, waitFor, check, log, sleep, freePort, summary, repoRoot, adminKey: ADMIN_KEY });
    } catch (e) {
      summary.failures.push(`embedded phase error: ${e && e.stack ? e.stack : String(e)}`);
      log(`embedded phase error: ${String(e)}`);
    }
    // only the embedded phase asked for: the shared stack below is not booted at all
    if (ONLY.size > 0 && [...ONLY].every((n) => n === 'embedded')) return finish(t0);
  }
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flywheel-rel-state-'));
  const natsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flywheel-rel-nats-'));
  const natsPort = await freePort();
  const natsUrl = `nats://127.0.0.1:${natsPort}`;
  const startNats = async () => {
    const p = run('nats-server', 'nats-server', ['-a', '127.0.0.1', '-p', String(natsPort), '-js', '-sd', natsDir], {});
    await waitFor(async () => (/Server is ready/.test(p.output()) ? true : undefined), 15_000, 'nats-server ready');
    return p;
  };
  let nats = await startNats();

  // Postgres throwaway database when reachable, else an embedded Postgres of our own (services without
  // DATABASE_URL have no store at all: only the launcher runs the embedded one for them)
  let database = null;
  let embeddedDb = null;
  let embeddedDbDir = null;
  try {
    // store.testing is not in @flywheel/store's index (tests import it beside the code): the compiled file
    const { createThrowawayDatabase } = require(path.join(repoRoot, 'dist', 'libs', 'store', 'src', 'store.testing.js'));
    database = await createThrowawayDatabase(PG_ADMIN_URL);
    log(`database ${database.name}`);
  } catch (e) {
    const { startLockedEmbeddedPostgres } = require('@flywheel/store');
    embeddedDbDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flywheel-rel-pg-'));
    embeddedDb = await startLockedEmbeddedPostgres({ dataDir: path.join(embeddedDbDir, 'store') });
    log(`no Postgres at FLYWHEEL_TEST_DATABASE_URL (${String(e).slice(0, 120)}): an embedded Postgres at ${embeddedDb.url}; the database outage check (phase db, Postgres-only: ALLOW_CONNECTIONS) is skipped`);
  }
  GW_PORT = await freePort();
  const baseEnv = {
    NATS_URL: natsUrl,
    FLYWHEEL_STATE_DIR: stateDir,
    FLYWHEEL_LOG_LEVEL: 'log',
    FLYWHEEL_API_KEYS: USER_KEY,
    FLYWHEEL_ADMIN_KEYS: ADMIN_KEY,
    FLYWHEEL_RATE_LIMIT_RPM: '0',
    FLYWHEEL_RATE_LIMIT_TPM: '0',
    FLYWHEEL_GENERATE_TIMEOUT_MS: String(GENERATE_TIMEOUT_MS),
    FLYWHEEL_STORE_RETRY_MAX_MS: '1000',
    FLYWHEEL_BACKLOG_METRICS_MS: '1000',
    FLYWHEEL_THREADS: '1',
    DATABASE_URL: database ? database.url : embeddedDb.url,
  };
  const policyEnv = async (extra = {}) => ({ ...baseEnv, FLYWHEEL_POLICY_PORT: String(await freePort()), ...extra });
  let policyA = run('policy-a', process.execPath, [entry('policy')], await policyEnv({ FLYWHEEL_INSTANCE_ID: 'policy-a' }));
  let policyB = run('policy-b', process.execPath, [entry('policy')], await policyEnv({ FLYWHEEL_INSTANCE_ID: 'policy-b' }));
  const moderation = run('moderation', process.execPath, [entry('moderation')], { ...baseEnv, FLYWHEEL_MODERATION_PORT: String(await freePort()) });
  const gateway = run('gateway', process.execPath, [entry('gateway')], { ...baseEnv, FLYWHEEL_GATEWAY_PORT: String(GW_PORT) });
  const cleanup = async () => {
    for (const p of [...procs].reverse()) await stopProc(p);
    if (database) {
      await database.admin(`ALTER DATABASE ${database.name} ALLOW_CONNECTIONS true`).catch(() => undefined);
      await database.drop().catch(() => undefined);
    }
    if (embeddedDb) await embeddedDb.stop().catch(() => undefined);
    if (embeddedDbDir) fs.rmSync(embeddedDbDir, { recursive: true, force: true });
    fs.rmSync(stateDir, { recursive: true, force: true });
    fs.rmSync(natsDir, { recursive: true, force: true });
  };

  const normalChat = async (stream = false) =>
    req({ method: 'POST', path: '/v1/chat/completions', headers: jsonH(USER_KEY), body: JSON.stringify({ model: 'stories260K', messages: [{ role: 'user', content: 'Once upon a time' }], max_tokens: 8, stream }), timeoutMs: 20_000 });

  let nulChat = { status: 0 };
  let nulId = null;
  try {
    await waitFor(async () => ((await req({ path: '/v1/models', headers: bearer(USER_KEY), timeoutMs: 3000 })).status === 200 ? true : undefined), 120_000, 'gateway /v1/models');
    await waitFor(async () => ((await req({ path: '/v1/feedback?completion_id=chatcmpl-none', headers: bearer(USER_KEY), timeoutMs: 3000 })).status === 200 ? true : undefined), 60_000, 'store open');
    await waitFor(async () => ((await req({ path: '/healthz', timeoutMs: 3000 })).body.includes('"moderation":{"status":"up"') ? true : undefined), 60_000, 'moderation up').catch(() => log('moderation not reported up; continuing'));
    const first = await normalChat();
    check('boot: a normal chat completion succeeds', first.status === 200, `${first.status} ${first.body?.slice(0, 200)}`);
    COMPLETION_ID = JSON.parse(first.body || '{}').id || 'chatcmpl-x';
    const login = await req({ method: 'POST', path: '/admin/api/session', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: ADMIN_KEY }) });
    const setCookie = [].concat(login.headers?.['set-cookie'] ?? []).join('; ');
    ADMIN_COOKIE = (setCookie.match(/flywheel_admin_session=[^;]+/) || [''])[0];
    CSRF = JSON.parse(login.body || '{}').csrf_token || '';
    check('security: admin login sets a session cookie', login.status === 200 && !!ADMIN_COOKIE && !!CSRF, `${login.status} ${login.body?.slice(0, 200)}`);
    check('security: admin session cookie is HttpOnly + SameSite=Strict', /HttpOnly/i.test(setCookie) && /SameSite=Strict/i.test(setCookie), setCookie);
    log(`booted in ${Date.now() - t0} ms`);
    // a completion whose prompt carries a NUL character (valid JSON "\u0000"; Postgres text/jsonb refuse it):
    // its record must be stored or dead-lettered, never block the store writer (checked in the database phase)
    nulChat = await req({ method: 'POST', path: '/v1/chat/completions', headers: jsonH(USER_KEY), body: JSON.stringify({ model: 'stories260K', messages: [{ role: 'user', content: 'a\u0000b' }], max_tokens: 4 }) });
    nulId = nulChat.status === 200 ? JSON.parse(nulChat.body).id : null;
    check('boot: a chat whose prompt holds a NUL character is answered 200', nulChat.status === 200, `${nulChat.status}`);

    // ---------------- 1. fuzzer ----------------
    if (phase('fuzz')) {
      const fz = { sent: 0, byStatus: {}, timeouts: 0, notSent: 0 };
      const fuzzStart = Date.now();
      const cases = Array.from({ length: FUZZ_N }, () => oneFuzz()); // generated up front: same seed, same cases
      await pool(cases.length, 24, async (k) => {
        const c = cases[k];
        const res = await req({ ...c, timeoutMs: 30_000 });
        if (res.notSent) return void (fz.notSent += 1);
        fz.sent += 1;
        fz.byStatus[res.status] = (fz.byStatus[res.status] || 0) + 1;
        if (res.timedOut) {
          fz.timeouts += 1;
          summary.hangs += 1;
        }
        record5xx('fuzz', c, res);
      });
      const slow = await slowloris(6);
      for (const a of slow) {
        const m = /^HTTP\/1\.1 (\d+)/.exec(a);
        if (m && Number(m[1]) >= 500) record5xx('slowloris', { method: 'POST', path: '/v1/chat/completions' }, { status: Number(m[1]), body: a });
      }
      summary.fuzz = { cases: cases.length, sent: fz.sent, not_sendable_by_node: fz.notSent, by_status: fz.byStatus, timeouts: fz.timeouts, seconds: Math.round((Date.now() - fuzzStart) / 1000), slowloris_answers: slow.map((a) => (/^HTTP\/1\.1 (\d+)/.exec(a) || [0, 'closed'])[1]) };
      check('fuzz: zero 5xx', summary['5xx'] === 0, JSON.stringify(fivexxSamples.slice(0, 5)));
      check('fuzz: zero timeouts', fz.timeouts === 0, `${fz.timeouts}`);
      check('fuzz: all processes alive', procs.filter((p) => !p.expectedExit).every(alive), procs.filter((p) => !p.expectedExit && !alive(p)).map((p) => p.name).join(',')); // (phase embedded's launcher has stopped on purpose)
      // regressions of bugs this suite found: NUL bytes in ids / filters reaching the database were 500s
      const nulPaths = [
        ['/admin/api/completions/%00', 'admin'], ['/admin/api/exports/%00/download', 'admin'], ['/admin/api/inbox?q=%00', 'admin'], ['/admin/api/inbox?policy_version=a%00b', 'admin'],
        ['/admin/api/stats?policy_version=%00', 'admin'], ['/admin/api/inbox?view=completions&q=%00', 'admin'], ['/v1/feedback?completion_id=chatcmpl-%00', 'user'], ['/v1/models/%00', 'user'],
      ];
      const nulBad = [];
      for (const [p, scope] of nulPaths) {
        const r = await req({ path: p, headers: scope === 'admin' ? { cookie: ADMIN_COOKIE } : bearer(USER_KEY) });
        if (r.status >= 500 || r.status === 0) nulBad.push(`${p} → ${r.status}`);
      }
      for (const body of [{ completion_id: 'chatcmpl-\u0000', kind: 'rating', value: 3 }, { completion_id: COMPLETION_ID, kind: 'correction', value: 'a\u0000b', comment: '\u0000' }]) {
        const r = await req({ method: 'POST', path: '/v1/feedback', headers: jsonH(USER_KEY), body: JSON.stringify(body) });
        if (r.status >= 500 || r.status === 0) nulBad.push(`POST /v1/feedback ${JSON.stringify(body)} → ${r.status}`);
      }
      check('fuzz regressions: NUL bytes in ids, filters and feedback never 5xx', nulBad.length === 0, nulBad.join('; '));
      const after = await normalChat();
      check('fuzz: a normal request succeeds afterwards', after.status === 200, `${after.status} ${after.body?.slice(0, 200)}`);
    }

    // ---------------- 2. security ----------------
    if (phase('security')) {
      const routes = endpoints.filter((e) => e.scope !== 'login');
      const sec = [];
      for (const e of routes) {
        const body = e.t ? JSON.stringify(templates[e.t]()) : undefined;
        const h = body ? { 'content-type': 'application/json' } : {};
        const none = await req({ method: e.method, path: e.path, headers: h, body });
        const wrong = await req({ method: e.method, path: e.path, headers: { ...h, ...bearer(WRONG_KEY) }, body });
        if (none.status !== 401) sec.push(`${e.method} ${e.path} no key → ${none.status}`);
        if (wrong.status !== 401 && !(e.scope === 'admin' && wrong.status === 403)) sec.push(`${e.method} ${e.path} wrong key → ${wrong.status}`);
        if (e.scope === 'admin') {
          const user = await req({ method: e.method, path: e.path, headers: { ...h, ...bearer(USER_KEY) }, body });
          if (user.status !== 403 && user.status !== 401) sec.push(`${e.method} ${e.path} user key → ${user.status}`);
        } else {
          const adm = await req({ method: e.method, path: e.path, headers: { ...h, ...bearer(ADMIN_KEY) }, body });
          if (adm.status !== 403) sec.push(`${e.method} ${e.path} admin key on /v1 → ${adm.status}`);
        }
      }
      const userLogin = await req({ method: 'POST', path: '/admin/api/session', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: USER_KEY }) });
      if (userLogin.status !== 403) sec.push(`admin login with a user key → ${userLogin.status}`);
      check('security: every /v1 and /admin/api route refuses no key, wrong key and the other scope', sec.length === 0, sec.join('; '));
      const origin = 'http://evil.example';
      const corsGet = await req({ path: '/v1/models', headers: { ...bearer(USER_KEY), origin } });
      const corsPre = await req({ method: 'OPTIONS', path: '/v1/chat/completions', headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' } });
      const corsAdm = await req({ method: 'OPTIONS', path: '/admin/api/session', headers: { origin, 'access-control-request-method': 'POST' } });
      const acao = [corsGet, corsPre, corsAdm].map((r) => r.headers?.['access-control-allow-origin']).filter(Boolean);
      check('security: CORS closed (no Access-Control-Allow-Origin on cross-origin request or preflight)', acao.length === 0, `${acao.join(',')} preflight status ${corsPre.status}`);
      summary.cors_preflight_status = corsPre.status;
    }

    // ---------------- 3a. kill -9 one of two policy replicas under streaming load ----------------
    if (phase('kill')) {
      const results = [];
      const killAt = Date.now() + 3000;
      const endAt = Date.now() + 10_000;
      let killed = false;
      const killer = (async () => {
        await sleep(killAt - Date.now());
        policyB.expectedExit = true;
        policyB.child.kill('SIGKILL');
        killed = true;
        log('kill -9 policy-b');
      })();
      await Promise.all(
        Array.from({ length: 12 }, async () => {
          while (Date.now() < endAt) {
            const startedAfterKill = killed;
            const t = Date.now();
            const r = await streamOnce(96, GENERATE_TIMEOUT_MS + 10_000);
            results.push({ ...r, startedAfterKill: startedAfterKill && t > killAt + 500 });
          }
        }),
      );
      await killer;
      const kinds = {};
      for (const r of results) kinds[r.kind] = (kinds[r.kind] || 0) + 1;
      const after = results.filter((r) => r.startedAfterKill);
      const badAfter = after.filter((r) => r.kind !== 'ok');
      const unclear = results.filter((r) => !['ok', 'error_chunk'].includes(r.kind) && !/^http_(429|503|504)$/.test(r.kind));
      summary.kill_policy_replica = { requests: results.length, outcomes: kinds, started_after_kill: after.length, failed_after_kill: badAfter.length, max_ms: Math.max(...results.map((r) => r.ms)) };
      check('fault kill -9 policy: requests started after the kill are served by the survivor', after.length > 0 && badAfter.length === 0, JSON.stringify(badAfter.slice(0, 3)));
      check('fault kill -9 policy: in-flight streams end with an error chunk or finish, none hang or truncate', unclear.length === 0 && !results.some((r) => r.kind === 'hang'), JSON.stringify(unclear.slice(0, 3)));
    }

    // ---------------- 3b. restart the private nats-server ----------------
    if (phase('nats')) {
      await stopProc(nats);
      log('nats-server stopped');
      await sleep(2000);
      const during = await normalChat();
      summary.nats_down_status = during.status;
      nats = await startNats();
      log('nats-server restarted');
      const tR = Date.now();
      let ok = false;
      try {
        await waitFor(async () => ((await normalChat()).status === 200 ? true : undefined), 60_000, 'chat after NATS restart');
        ok = true;
      } catch (e) {
        log(String(e));
      }
      const recoveredMs = ok ? Date.now() - tR : null;
      const gwOffset = gateway.output().length;
      const steady = {};
      const failedAnswers = [];
      for (let k = 0; k < 20 && ok; k++) {
        const r = await normalChat();
        steady[r.status] = (steady[r.status] || 0) + 1;
        if (r.status !== 200) failedAnswers.push(`#${k} ${r.status} ${String(r.body || r.error).slice(0, 300)}`);
      }
      summary.nats_restart = { status_while_down: during.status, recovered_ms: recoveredMs, next_20_requests: steady };
      if ((steady[200] || 0) !== 20) summary.nats_restart.failed_answers = failedAnswers.slice(0, 4);
      if ((steady[200] || 0) !== 20)
        summary.nats_restart.gateway_log_of_failures = gateway
          .output()
          .slice(gwOffset)
          .split('\n')
          .filter((l) => /"status":5\d\d|WARN|ERROR/.test(l))
          .slice(-4)
          .map((l) => l.slice(0, 700));
      check('fault nats restart: the 20 requests after recovery all succeed', (steady[200] || 0) === 20, JSON.stringify(steady));
      check('fault nats restart: services reconnect and serve again without a restart', ok && procs.filter((p) => !p.expectedExit).every(alive));
      check('fault nats restart: no 5xx other than 503/504 while NATS is down', during.status < 500 || during.status === 503 || during.status === 504, `${during.status}`);
    }

    // ---------------- 3c. database outage during feedback load ----------------
    if (!database && phase('db')) {
      summary.db_outage = { skipped: 'no Postgres server: the outage is made with ALLOW_CONNECTIONS on a throwaway database' };
      log('phase db skipped: no Postgres server at FLYWHEEL_TEST_DATABASE_URL (the embedded one is killed in phase embedded)');
    }
    if (database && phase('db')) {
      const { Client } = require('pg');
      const comp = await normalChat();
      const cid = JSON.parse(comp.body || '{}').id;
      const accepted = new Set();
      let non200 = 0;
      let outageStarted = false;
      const sendFb = async (i) => {
        const r = await req({ method: 'POST', path: '/v1/feedback', headers: jsonH(USER_KEY), body: JSON.stringify({ completion_id: cid, kind: 'rating', value: 1 + (i % 5), idempotency_key: `outage-${i}` }) });
        if (r.status === 200) accepted.add(JSON.parse(r.body).id);
        else {
          non200 += 1;
          record5xx('feedback-outage', { method: 'POST', path: '/v1/feedback' }, r);
        }
      };
      let i = 0;
      const load = (async () => {
        const end = Date.now() + 9000;
        while (Date.now() < end && alive(gateway)) await Promise.all(Array.from({ length: 4 }, () => sendFb(i++)));
      })();
      await sleep(1500);
      await database.admin(`ALTER DATABASE ${database.name} ALLOW_CONNECTIONS false`);
      await database.admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${database.name}' AND pid <> pg_backend_pid()`);
      outageStarted = true;
      log('database refusing connections');
      await sleep(5000);
      await database.admin(`ALTER DATABASE ${database.name} ALLOW_CONNECTIONS true`);
      log('database back');
      await load;
      let stored = 0;
      await waitFor(
        async () => {
          const c = new Client({ connectionString: database.url });
          await c.connect();
          try {
            const r = await c.query('SELECT count(*)::int AS n FROM feedback WHERE completion_id = $1', [cid]);
            stored = r.rows[0].n;
          } finally {
            await c.end();
          }
          return stored >= accepted.size ? true : undefined;
        },
        60_000,
        'feedback stored after the outage',
      ).catch(() => undefined);
      // both completions reach the store (the NUL one stored or dead-lettered, never blocking the writer)
      const completionsWanted = [cid, nulId].filter(Boolean);
      let completionsFound = [];
      await waitFor(
        async () => {
          const c = new Client({ connectionString: database.url });
          await c.connect();
          try {
            const r = await c.query('SELECT id FROM completions WHERE id = ANY($1)', [completionsWanted]);
            const d = await c.query("SELECT count(*)::int AS n FROM dead_letters WHERE payload::text LIKE '%' || $1 || '%'", [nulId || 'none']).catch(() => ({ rows: [{ n: 0 }] }));
            completionsFound = r.rows.map((x) => x.id);
            if (d.rows[0].n > 0 && nulId && !completionsFound.includes(nulId)) completionsFound.push(`${nulId} (dead letter)`);
          } finally {
            await c.end();
          }
          return completionsFound.length >= completionsWanted.length ? true : undefined;
        },
        30_000,
        'completion records stored',
      ).catch(() => undefined);
      summary.nul_prompt = { status: nulChat.status, completion_id: nulId, completions_wanted: completionsWanted, found: completionsFound };
      check('store: completion records (one with a NUL in its prompt) reach the store', completionsFound.length >= completionsWanted.length, JSON.stringify(summary.nul_prompt));
      summary.records_lost += Math.max(0, completionsWanted.length - completionsFound.length);
      summary.records_lost += Math.max(0, accepted.size - stored);
      summary.db_outage = { feedback_accepted: accepted.size, stored, non_200: non200, outage: outageStarted };
      check('fault database outage: no accepted feedback lost', accepted.size > 0 && stored === accepted.size, `accepted ${accepted.size}, stored ${stored}`);
      check('fault database outage: every feedback POST answered 200', non200 === 0, `${non200} non-200`);
    }

    // ---------------- 3d. Redis stopped during a training job ----------------
    // A private redis-server (append-only file, fsync always) under a running `sft` job: kill -9 it mid-job, start
    // it again on the same port and data folder, and the same trainer process must finish the job and register
    // its checkpoint. The trainer has its own embedded store and state folder: nothing else here touches them.
    if (phase('redis')) {
      const { Queue } = require('bullmq');
      const IORedis = require('ioredis');
      const redisDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flywheel-rel-redis-'));
      const trainerDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flywheel-rel-trainer-'));
      const redisPort = await freePort();
      const startRedis = async () => {
        const args = ['--port', String(redisPort), '--bind', '127.0.0.1', '--dir', redisDir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''];
        const p = run('redis-server', 'redis-server', args, {});
        await waitFor(async () => (/Ready to accept connections/.test(p.output()) ? true : undefined), 15_000, 'redis-server ready');
        return p;
      };
      let redis = await startRedis();
      const redisUrl = `redis://127.0.0.1:${redisPort}`;
      const trainerPort = await freePort();
      const { openStore, findModelVersion, startLockedEmbeddedPostgres } = require('@flywheel/store');
      const embedded = await startLockedEmbeddedPostgres({ dataDir: path.join(trainerDir, 'store') });
      const trainerEnv = { ...baseEnv, DATABASE_URL: embedded.url, REDIS_URL: redisUrl, FLYWHEEL_STATE_DIR: trainerDir, FLYWHEEL_TRAINER_PORT: String(trainerPort), FLYWHEEL_TRAINER_THREADS: '1' };
      const trainer = run('trainer', process.execPath, [entry('trainer')], trainerEnv);
      const connection = new IORedis(redisUrl, { maxRetriesPerRequest: null });
      connection.on('error', () => undefined); // refused while redis-server is down: retried
      const queue = new Queue('sft', { connection });
      queue.on('error', () => undefined);
      const out = { job_id: 'rel-sft-redis', steps: REDIS_JOB_STEPS };
      try {
        await waitFor(async () => ((await httpStatus(trainerPort, '/readyz')) === 200 ? true : undefined), 60_000, 'trainer ready');
        const jsonl = path.join(trainerDir, 'sft.jsonl');
        const story = (i) => ({ messages: [{ role: 'user', content: `Tell me story ${i}.` }, { role: 'assistant', content: `Once upon a time, there was a little ${['cat', 'dog', 'bird'][i % 3]}. It liked to play in the sun with Lily.` }] });
        fs.writeFileSync(jsonl, Array.from({ length: 24 }, (_, i) => JSON.stringify(story(i))).join('\n') + '\n');
        const data = { modelDir: path.join(repoRoot, 'models', 'stories260K'), data: { kind: 'jsonl', path: jsonl }, steps: REDIS_JOB_STEPS, lr: 3e-3, batchSize: 4, seed: 1, heldout: 0.2, checkpointEvery: 10 };
        const job = await queue.add('sft', data, { jobId: out.job_id });
        const stepOf = async () => Number((await queue.getJob(job.id))?.progress?.step ?? 0);
        out.step_at_stop = await waitFor(async () => {
          const step = await stepOf();
          return step >= 3 ? step : undefined;
        }, 90_000, 'sft job started');
        const trainerPid = trainer.child.pid;
        await stopProc(redis, 'SIGKILL');
        const downAt = Date.now();
        log(`redis-server killed at step ${out.step_at_stop}`);
        await sleep(4000);
        redis = await startRedis();
        out.redis_down_ms = Date.now() - downAt;
        log('redis-server restarted');
        const final = await waitFor(async () => {
          const j = await queue.getJob(job.id);
          const state = j ? await j.getState() : 'missing';
          return state === 'completed' || state === 'failed' || state === 'missing' ? { j, state } : undefined;
        }, 180_000, 'sft job finished').catch((e) => ({ j: null, state: String(e) }));
        out.job_state = final.state;
        out.step_after = await stepOf().catch(() => null);
        out.stalled = final.j?.stalledCounter ?? null;
        out.attempts = final.j?.attemptsMade ?? null;
        const result = final.j?.returnvalue ?? null;
        out.resumed_from_step = result?.resumedFromStep ?? null;
        out.version_id = result?.versionId ?? null;
        out.trainer_restarted = !alive(trainer) || trainer.child.pid !== trainerPid;
        // the candidate version, read from the embedded Postgres the trainer wrote it to
        if (result?.versionId) {
          const store = await openStore({ url: embedded.url });
          try {
            const row = await findModelVersion(store.db, result.versionId);
            out.version_registered = !!row && row.checkpoint === result.checkpointDir && fs.existsSync(path.join(result.checkpointDir, 'model.safetensors'));
          } finally {
            await store.close();
          }
        }
        if (final.state === 'failed') out.failed_reason = String(final.j?.failedReason).slice(0, 300);
        if (final.state !== 'completed') out.trainer_log = trainer.output().split('\n').filter((l) => /WARN|ERROR|error|sft/.test(l)).slice(-6).map((l) => l.slice(0, 400));
      } catch (e) {
        out.error = String(e).slice(0, 400);
      } finally {
        summary.redis_outage = out;
        await queue.close().catch(() => undefined);
        connection.disconnect();
        await stopProc(trainer);
        await stopProc(redis);
        await embedded.stop();
        fs.rmSync(redisDir, { recursive: true, force: true });
        fs.rmSync(trainerDir, { recursive: true, force: true });
      }
      check('fault redis stop: the sft job running across a Redis kill + restart completes', out.job_state === 'completed' && out.step_after === REDIS_JOB_STEPS, JSON.stringify(out));
      check('fault redis stop: the trainer survives it without a restart', out.trainer_restarted === false, JSON.stringify(out));
      check('fault redis stop: the job registers its checkpoint as a candidate version', out.version_registered === true, JSON.stringify(out));
    }

    // ---------------- 3e. backlog gauges agree with what the admin sees ----------------
    if (phase('metrics')) {
      for (let i = 0; i < 3; i++) {
        const body = JSON.stringify({ completion_id: COMPLETION_ID, kind: 'rating', value: 1 + i, idempotency_key: `gauge-${i}` });
        const r = await req({ method: 'POST', path: '/v1/feedback', headers: jsonH(USER_KEY), body });
        record5xx('metrics', { method: 'POST', path: '/v1/feedback', body }, r);
      }
      let seen = {};
      const agreed = await waitFor(
        async () => {
          const [m, stats] = await Promise.all([req({ path: '/metrics', timeoutMs: 5000 }), req({ path: '/admin/api/stats', headers: { cookie: ADMIN_COOKIE }, timeoutMs: 5000 })]);
          const pending = stats.status === 200 ? JSON.parse(stats.body).totals.by_status.pending : null;
          seen = {
            review_backlog: metricValue(m.body, 'flywheel_review_backlog'),
            inbox_pending: pending,
            consumer_pending: { COMPLETIONS: metricValue(m.body, 'flywheel_store_consumer_pending', { stream: 'COMPLETIONS' }), FEEDBACK: metricValue(m.body, 'flywheel_store_consumer_pending', { stream: 'FEEDBACK' }) },
          };
          const drained = seen.consumer_pending.COMPLETIONS === 0 && seen.consumer_pending.FEEDBACK === 0;
          return pending >= 3 && seen.review_backlog === pending && drained ? true : undefined;
        },
        30_000,
        'backlog gauges',
      ).then(
        () => true,
        () => false,
      );
      summary.backlog_gauges = seen;
      check('metrics: flywheel_review_backlog equals the admin pending count; flywheel_store_consumer_pending drains to 0', agreed, JSON.stringify(seen));
    }

    // ---------------- 4. load: streaming clients, bounded gateway RSS ----------------
    if (phase('load')) {
      const rss = [];
      const lat = [];
      const kinds = {};
      const sampler = setInterval(() => rss.push(rssKb(gateway.child.pid)), 1000);
      const endAt = Date.now() + LOAD_S * 1000;
      await Promise.all(
        Array.from({ length: LOAD_CLIENTS }, async (_, c) => {
          await sleep((c * 10) % 2000);
          while (Date.now() < endAt && alive(gateway)) {
            const r = await streamOnce(32, 60_000);
            kinds[r.kind] = (kinds[r.kind] || 0) + 1;
            if (r.kind === 'ok') lat.push(r.ms);
          }
        }),
      );
      clearInterval(sampler);
      const rs = rss.filter((x) => x !== null);
      const firstQ = rs.slice(0, Math.max(1, Math.floor(rs.length / 4)));
      const lastQ = rs.slice(-Math.max(1, Math.floor(rs.length / 4)));
      const avg = (a) => a.reduce((s, x) => s + x, 0) / a.length;
      summary.p99_ms_under_load = pct(lat, 99);
      summary.load = {
        clients: LOAD_CLIENTS,
        seconds: LOAD_S,
        outcomes: kinds,
        completed: lat.length,
        p50_ms: pct(lat, 50),
        p99_ms: pct(lat, 99),
        gateway_rss_mb: { min: Math.round(Math.min(...rs) / 1024), max: Math.round(Math.max(...rs) / 1024), first_quarter_avg: Math.round(avg(firstQ) / 1024), last_quarter_avg: Math.round(avg(lastQ) / 1024) },
      };
      check('load: every streaming request completes (no hang, no error)', Object.keys(kinds).every((k) => k === 'ok'), JSON.stringify(kinds));
      check('load: gateway RSS bounded (max < 1 GiB, last quarter < 1.5 × first quarter + 64 MiB)', Math.max(...rs) < 1024 * 1024 && avg(lastQ) < avg(firstQ) * 1.5 + 65536, JSON.stringify(summary.load.gateway_rss_mb));
    }

    // ---------------- 4b. beyond the queue bound: 429 + Retry-After, not timeouts ----------------
    if (phase('queue')) {
      await stopProc(policyA);
      policyA = run('policy-small', process.execPath, [entry('policy')], await policyEnv({ FLYWHEEL_INSTANCE_ID: 'policy-small', FLYWHEEL_MAX_SEQS: '2', FLYWHEEL_MAX_WAITING: '2' }));
      await waitFor(async () => ((await normalChat()).status === 200 ? true : undefined), 60_000, 'small policy serving');
      const res = await Promise.all(Array.from({ length: 40 }, () => streamOnce(64, GENERATE_TIMEOUT_MS + 20_000)));
      const kinds = {};
      for (const r of res) kinds[r.kind] = (kinds[r.kind] || 0) + 1;
      const r429 = res.filter((r) => r.kind === 'http_429');
      summary.queue_bound = { requests: res.length, outcomes: kinds, max_ms_429: r429.length ? Math.max(...r429.map((r) => r.ms)) : null };
      check('queue bound: overflow answers 429 with Retry-After (not timeouts)', r429.length > 0 && r429.every((r) => r.retryAfter) && !res.some((r) => r.kind === 'hang' || r.kind === 'http_504'), JSON.stringify(kinds));
    }

    // ---------------- final: alive + keys never printed ----------------
    check('end: every process that was not killed on purpose is alive', procs.filter((p) => !p.expectedExit).every(alive), procs.filter((p) => !p.expectedExit && !alive(p)).map((p) => p.name).join(','));
    const final = await normalChat();
    check('end: a normal request succeeds', final.status === 200, `${final.status}`);
  } catch (e) {
    summary.failures.push(`suite error: ${e && e.stack ? e.stack : String(e)}`);
    log(`suite error: ${String(e)}`);
  } finally {
    await cleanup();
    finish(t0);
  }
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

main();
