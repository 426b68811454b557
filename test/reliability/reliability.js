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
 * This file boots the shared stack, decides which phases run, and holds the metrics, load and queue phases and
 * the end checks; the other phases are in embedded.js, fuzz.js and faults.js, and the shared helpers, settings
 * and summary bookkeeping in support.js (none of those is a runnable entry point).
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
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { runEmbeddedPhase } = require('./embedded');
const { runFuzzPhase, runSecurityPhase } = require('./fuzz');
const { runKillPhase, runNatsPhase, runDbPhase, runRedisPhase } = require('./faults');
const {
  repoRoot, LOAD_CLIENTS, LOAD_S, PG_ADMIN_URL, GENERATE_TIMEOUT_MS, ONLY, phase, USER_KEY, ADMIN_KEY, summary, state, log, check, sleep,
  procs, freePort, run, stopProc, waitFor, entry, alive, rssKb, req, metricValue, bearer, jsonH, record5xx, streamOnce, pct, finish,
} = require('./support');

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
  const nats = await startNats();

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
  state.gwPort = await freePort();
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
  const gateway = run('gateway', process.execPath, [entry('gateway')], { ...baseEnv, FLYWHEEL_GATEWAY_PORT: String(state.gwPort) });
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
    state.completionId = JSON.parse(first.body || '{}').id || 'chatcmpl-x';
    const login = await req({ method: 'POST', path: '/admin/api/session', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: ADMIN_KEY }) });
    const setCookie = [].concat(login.headers?.['set-cookie'] ?? []).join('; ');
    state.adminCookie = (setCookie.match(/flywheel_admin_session=[^;]+/) || [''])[0];
    state.csrf = JSON.parse(login.body || '{}').csrf_token || '';
    check('security: admin login sets a session cookie', login.status === 200 && !!state.adminCookie && !!state.csrf, `${login.status} ${login.body?.slice(0, 200)}`);
    check('security: admin session cookie is HttpOnly + SameSite=Strict', /HttpOnly/i.test(setCookie) && /SameSite=Strict/i.test(setCookie), setCookie);
    log(`booted in ${Date.now() - t0} ms`);
    // a completion whose prompt carries a NUL character (valid JSON "\u0000"; Postgres text/jsonb refuse it):
    // its record must be stored or dead-lettered, never block the store writer (checked in the database phase)
    nulChat = await req({ method: 'POST', path: '/v1/chat/completions', headers: jsonH(USER_KEY), body: JSON.stringify({ model: 'stories260K', messages: [{ role: 'user', content: 'a\u0000b' }], max_tokens: 4 }) });
    nulId = nulChat.status === 200 ? JSON.parse(nulChat.body).id : null;
    check('boot: a chat whose prompt holds a NUL character is answered 200', nulChat.status === 200, `${nulChat.status}`);

    // ---------------- 1. fuzzer (fuzz.js) ----------------
    if (phase('fuzz')) await runFuzzPhase({ normalChat });

    // ---------------- 2. security (fuzz.js) ----------------
    if (phase('security')) await runSecurityPhase();

    // ---------------- 3a-3d. faults (faults.js): policy kill -9, NATS restart, database outage, Redis kill -9 ----------------
    const ctx = { nats, startNats, policyB, gateway, database, normalChat, nulChat, nulId, baseEnv };
    if (phase('kill')) await runKillPhase(ctx);
    if (phase('nats')) await runNatsPhase(ctx);
    if (phase('db')) await runDbPhase(ctx);
    if (phase('redis')) await runRedisPhase(ctx);

    // ---------------- 3e. backlog gauges agree with what the admin sees ----------------
    if (phase('metrics')) {
      for (let i = 0; i < 3; i++) {
        const body = JSON.stringify({ completion_id: state.completionId, kind: 'rating', value: 1 + i, idempotency_key: `gauge-${i}` });
        const r = await req({ method: 'POST', path: '/v1/feedback', headers: jsonH(USER_KEY), body });
        record5xx('metrics', { method: 'POST', path: '/v1/feedback', body }, r);
      }
      let seen = {};
      const agreed = await waitFor(
        async () => {
          const [m, stats] = await Promise.all([req({ path: '/metrics', timeoutMs: 5000 }), req({ path: '/admin/api/stats', headers: { cookie: state.adminCookie }, timeoutMs: 5000 })]);
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

main();
