/**
 * The reliability suite's fault phases (required by reliability.js): `kill` (kill -9 of one of two policy
 * replicas under streaming load), `nats` (stop and restart of the private nats-server), `db` (the throwaway
 * database refusing connections during feedback load; Postgres server only, skipped with the embedded one) and
 * `redis` (kill -9 and restart of a private redis-server under a running trainer `sft` job). Each takes the
 * context of the stack reliability.js booted; the nats phase puts the restarted server back into ctx.nats.
 * It does not boot the shared stack nor decide which phases run.
 */
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const {
  repoRoot, GENERATE_TIMEOUT_MS, REDIS_JOB_STEPS, USER_KEY, summary, log, check, sleep, procs, freePort, run, stopProc, waitFor, entry, alive,
  req, httpStatus, jsonH, record5xx, streamOnce, state,
} = require('./support');
const { RECONNECT_RETRY_MS } = require('@flywheel/mesh');

/** error.code of an OpenAI error body, or null. */
function errorCodeOf(body) {
  try {
    return JSON.parse(body).error?.code ?? null;
  } catch {
    return null;
  }
}

/** Phase `kill`: kill -9 policy-b 3 s into 10 s of 12 streaming clients. */
async function runKillPhase({ policyB }) {
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

/** Phase `nats`: stop the private nats-server, then start it again (ctx.nats is the new process). */
async function runNatsPhase(ctx) {
  const { gateway, normalChat } = ctx;
  await stopProc(ctx.nats);
  log('nats-server stopped');
  await sleep(2000);
  const timed = async (call) => {
    const t = Date.now();
    const r = await call();
    return { status: r.status, retryAfter: r.headers?.['retry-after'] ?? null, code: errorCodeOf(r.body), ms: Date.now() - t };
  };
  const during = await timed(normalChat);
  // on a completion this user owns: the feedback is refused for NATS, not for an unknown completion
  const feedbackDown = await timed(() =>
    req({ method: 'POST', path: '/v1/feedback', headers: jsonH(USER_KEY), body: JSON.stringify({ completion_id: state.completionId, kind: 'thumbs', value: 'up' }), timeoutMs: 10_000 }),
  );
  summary.nats_down_status = during.status;
  summary.nats_down_answers = { chat: during, feedback: feedbackDown };
  ctx.nats = await ctx.startNats();
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
  // A JetStream call into a dropped connection would wait out its 5 s ack timeout: refused at once instead.
  check('fault nats restart: a feedback POST while NATS is down answers 503 + Retry-After within 1 s', feedbackDown.status === 503 && feedbackDown.retryAfter !== null && feedbackDown.ms < 1000, JSON.stringify(feedbackDown));
  // A chat resends its moderation check and its generate for RECONNECT_RETRY_MS each (riding out a short
  // restart) before the same 503; the moderation check is skipped once the service is known down.
  const chatBoundMs = 2 * RECONNECT_RETRY_MS + 500;
  check(`fault nats restart: a chat while NATS is down answers 503 + Retry-After within ${chatBoundMs} ms`, during.status === 503 && during.retryAfter !== null && during.ms < chatBoundMs, JSON.stringify(during));
}

/** Phase `db`: the throwaway database refuses connections for 5 s under feedback load (skipped without a Postgres server). */
async function runDbPhase({ database, gateway, normalChat, nulChat, nulId }) {
  if (!database) {
    summary.db_outage = { skipped: 'no Postgres server: the outage is made with ALLOW_CONNECTIONS on a throwaway database' };
    log('phase db skipped: no Postgres server at FLYWHEEL_TEST_DATABASE_URL (the embedded one is killed in phase embedded)');
    return;
  }
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

/** Phase `redis`: kill -9 and restart a private redis-server under a running trainer `sft` job. */
async function runRedisPhase({ baseEnv }) {
  // A private redis-server (append-only file, fsync always) under a running `sft` job: kill -9 it mid-job, start
  // it again on the same port and data folder, and the same trainer process must finish the job and register
  // its checkpoint. The trainer has its own embedded store and state folder: nothing else here touches them.
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

module.exports = { runKillPhase, runNatsPhase, runDbPhase, runRedisPhase };
