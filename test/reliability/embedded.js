/**
 * The reliability suite's `embedded` phase (required by reliability.js): the default install (`npm start`'s
 * launcher, no DATABASE_URL, so ONE embedded Postgres) with its own state folder, free ports and its own
 * nats-server and redis-server, independent of every other process of the suite. Under ~20 s of steady writes
 * (chat completions, some streamed, and thumbs or rating feedback on answered completions, 6 at a time), the
 * database process (pid from <state>/embedded-postgres.json) is killed with kill -9, and ~5 s later the gateway
 * the launcher started (found in /proc by its entry point and FLYWHEEL_STATE_DIR). Once the launcher has brought
 * both back, every completion answered 200 and every feedback answered 2xx must be in the embedded Postgres
 * (queried with `pg`). Then Ctrl-C (SIGINT) must stop the launcher with exit code 0 and leave none of its
 * processes behind (services, nats-server, redis-server, the database).
 */
'use strict';
const http = require('node:http');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');

const WRITE_S = 20;
const CONCURRENCY = 6;
const KILL_DB_AT_S = 6;
const KILL_GATEWAY_AFTER_DB_S = 5;
const STORE_WAIT_MS = 90_000;
// a request that ends this long after a killed process is back still counts as caught in its outage
const OUTAGE_GRACE_MS = 2_000;

/** Pids of the processes whose environment holds FLYWHEEL_STATE_DIR=<stateDir> (optionally only those whose command line has `needle`). */
function pidsOfStateDir(stateDir, needle) {
  const pids = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (needle && !fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(needle)) continue;
      const env = fs.readFileSync(`/proc/${d}/environ`, 'utf8').split('\0');
      if (env.includes(`FLYWHEEL_STATE_DIR=${stateDir}`)) pids.push(Number(d));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}
/** Running, not merely unreaped: a child orphaned by the launcher may stay a zombie where PID 1 reaps nothing. */
const pidAlive = (pid) => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
};
/** The launcher's direct children right now ({pid, what}): services, nats-server, redis-server, the database. */
function childrenOf(ppid) {
  const kids = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== ppid) continue;
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      const app = /apps\/(\w+)\/src\/main\.js/.exec(cmd.join(' '));
      // the database names itself (process.title `flywheel-embedded-postgres`); redis-server rewrites its argv too
      const name = path.basename(cmd[0].split(' ')[0]);
      kids.push({ pid: Number(d), what: app ? app[1] : cmd[1] === '-e' || name.endsWith('embedded-postgres') ? 'embedded-postgres' : name });
    } catch {
      // gone meanwhile
    }
  }
  return kids;
}

/**
 * @param {object} s the suite's helpers: run, stopProc, waitFor, check, log, sleep, freePort, summary, repoRoot, adminKey
 */
async function runEmbeddedPhase(s) {
  const { run, waitFor, check, log, sleep, freePort, summary, repoRoot, adminKey } = s;
  const { Client } = require('pg');
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flywheel-rel-embedded-'));
  const infoFile = path.join(stateDir, 'embedded-postgres.json');
  const info = () => {
    try {
      return JSON.parse(fs.readFileSync(infoFile, 'utf8'));
    } catch {
      return null;
    }
  };
  const ports = {};
  for (const svc of ['gateway', 'policy', 'reward', 'moderation', 'trainer']) ports[`FLYWHEEL_${svc.toUpperCase()}_PORT`] = String(await freePort());
  const gwPort = Number(ports.FLYWHEEL_GATEWAY_PORT);
  // as a user runs `npm start`: whatever this shell carries for Flywheel is dropped (no DATABASE_URL, no API keys)
  const inherited = Object.keys(process.env).filter((k) => k.startsWith('FLYWHEEL_') || k === 'DATABASE_URL' || k === 'NATS_URL' || k === 'REDIS_URL');
  const env = {
    ...Object.fromEntries(inherited.map((k) => [k, undefined])),
    ...ports,
    NATS_URL: `nats://127.0.0.1:${await freePort()}`,
    REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    FLYWHEEL_STATE_DIR: stateDir,
    FLYWHEEL_ADMIN_KEYS: adminKey,
    FLYWHEEL_RATE_LIMIT_RPM: '0', // the dev key's default limits would turn steady writes into 429s
    FLYWHEEL_RATE_LIMIT_TPM: '0',
    FLYWHEEL_THREADS: '1',
  };
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  /** One request to this launcher's gateway: {status, body} or {status: 0, error}; never rejects. */
  const request = (method, p, headers, body, timeoutMs = 15_000) =>
    new Promise((resolve) => {
      summary.requests_sent += 1;
      let done = false;
      const finish = (v) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(v);
      };
      const r = http.request({ host: '127.0.0.1', port: gwPort, method, path: p, headers, agent }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => finish({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (e) => finish({ status: 0, error: String(e) }));
        res.on('aborted', () => finish({ status: 0, error: 'aborted' }));
      });
      const timer = setTimeout(() => {
        r.destroy(new Error('client timeout'));
        finish({ status: 0, error: 'timeout' });
      }, timeoutMs);
      r.on('error', (e) => finish({ status: 0, error: String(e) }));
      r.end(body);
    });

  const out = { write_s: WRITE_S, concurrency: CONCURRENCY };
  summary.embedded = out;
  const launcher = run('launcher-embedded', process.execPath, [path.join(repoRoot, 'dist', 'scripts', 'launcher', 'launcher.main.js')], env);
  let lastDbPid = null;
  const t0 = Date.now();
  try {
    const keyFile = path.join(stateDir, 'dev-api-key'); // written by the gateway at boot (no FLYWHEEL_API_KEYS)
    const devKey = await waitFor(async () => (fs.existsSync(keyFile) ? fs.readFileSync(keyFile, 'utf8').trim() || undefined : undefined), 120_000, 'the dev key');
    const auth = { authorization: `Bearer ${devKey}` };
    const jsonAuth = { ...auth, 'content-type': 'application/json' };
    await waitFor(async () => ((await request('GET', '/v1/models', auth, undefined, 3000)).status === 200 ? true : undefined), 120_000, 'launcher: gateway /v1/models');
    await waitFor(async () => ((await request('GET', '/v1/feedback?completion_id=chatcmpl-none', auth, undefined, 3000)).status === 200 ? true : undefined), 60_000, 'launcher: store open');
    const first = info();
    if (!first) throw new Error('no embedded-postgres.json in the state folder');
    lastDbPid = first.pid;
    out.boot_s = Math.round((Date.now() - t0) / 100) / 10;
    log(`embedded: launcher up in ${out.boot_s} s, database pid ${first.pid} at ${first.url.replace(/\/\/[^@]*@/, '//')}`);

    // ---- steady writes, with the database and then the gateway killed in the middle ----
    const completions = new Set();
    const feedback = new Set();
    const answered = []; // completion ids feedback may point at
    const outcomes = {};
    const count = (k) => (outcomes[k] = (outcomes[k] || 0) + 1);
    const fivexx = []; // {what, status, from, to, body}: sorted into the outages or not once both are over
    const timed = async (what, send) => {
      const from = Date.now();
      const r = await send();
      if (r.status >= 500) fivexx.push({ what, status: r.status, from, to: Date.now(), body: String(r.body || '').slice(0, 160) });
      return r;
    };
    let n = 0;
    const chat = async (stream) => {
      const body = JSON.stringify({ model: 'stories260K', messages: [{ role: 'user', content: `Once upon a time ${n++}` }], max_tokens: 8, stream });
      const r = await timed(stream ? 'chat_stream' : 'chat', () => request('POST', '/v1/chat/completions', jsonAuth, body));
      count(`chat${stream ? '_stream' : ''}_${r.status}`);
      if (r.status !== 200) return;
      let id = null;
      if (stream) {
        // accepted only when the stream finished: [DONE] and no error chunk
        if (!/data: \[DONE\]/.test(r.body) || /data: \{"error"/.test(r.body)) return void count('chat_stream_incomplete');
        id = (/"id":"(chatcmpl-[^"]+)"/.exec(r.body) || [])[1] || null;
      } else {
        try {
          id = JSON.parse(r.body).id;
        } catch {
          id = null;
        }
      }
      if (!id) return void count('chat_200_without_id');
      completions.add(id);
      answered.push(id);
    };
    const rate = async (i) => {
      const cid = answered[Math.floor(Math.random() * answered.length)];
      const kind = i % 2 === 0 ? 'thumbs' : 'rating';
      const value = kind === 'thumbs' ? (Math.random() < 0.5 ? 'up' : 'down') : 1 + Math.floor(Math.random() * 5);
      const body = JSON.stringify({ completion_id: cid, choice_index: 0, kind, value, idempotency_key: `rel-emb-${crypto.randomBytes(8).toString('hex')}` });
      const r = await timed(`feedback_${kind}`, () => request('POST', '/v1/feedback', jsonAuth, body));
      count(`feedback_${kind}_${r.status}`);
      if (r.status < 200 || r.status >= 300) return;
      try {
        const id = JSON.parse(r.body).id;
        if (id) feedback.add(id);
      } catch {
        count('feedback_2xx_unparsable');
      }
    };
    const writeStart = Date.now();
    const writeEnd = writeStart + WRITE_S * 1000;
    let k = 0;
    const writers = Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (Date.now() < writeEnd) {
          const i = k++;
          const before = Date.now();
          if (answered.length === 0 || i % 3 !== 2) await chat(i % 4 === 1);
          else await rate(i);
          if (Date.now() - before < 50) await sleep(50); // refusals while something is down answer at once: no busy loop
        }
      }),
    );
    await sleep(KILL_DB_AT_S * 1000);
    const dbKilledAt = Date.now();
    process.kill(first.pid, 'SIGKILL');
    log(`embedded: kill -9 database pid ${first.pid}`);
    const dbBack = waitFor(async () => {
      const now = info();
      return now && now.pid !== first.pid && pidAlive(now.pid) ? now : undefined;
    }, 60_000, 'embedded Postgres restarted').then((now) => {
      lastDbPid = now.pid;
      out.db_restart_s = Math.round((Date.now() - dbKilledAt) / 100) / 10;
      log(`embedded: database back as pid ${now.pid} after ${out.db_restart_s} s`);
      return now;
    });
    dbBack.catch(() => undefined); // awaited below; this only keeps an early throw from leaving it unhandled
    await sleep(KILL_GATEWAY_AFTER_DB_S * 1000);
    const gwPids = pidsOfStateDir(stateDir, path.join('apps', 'gateway', 'src', 'main.js'));
    if (gwPids.length !== 1) throw new Error(`expected one gateway process of this launcher, found ${JSON.stringify(gwPids)}`);
    const gwKilledAt = Date.now();
    process.kill(gwPids[0], 'SIGKILL');
    log(`embedded: kill -9 gateway pid ${gwPids[0]}`);
    const gwBack = waitFor(async () => {
      const pids = pidsOfStateDir(stateDir, path.join('apps', 'gateway', 'src', 'main.js'));
      if (!pids.length || pids.includes(gwPids[0])) return undefined;
      return (await request('GET', '/v1/models', auth, undefined, 3000)).status === 200 ? pids[0] : undefined;
    }, 90_000, 'gateway restarted by the launcher').then((pid) => {
      out.gateway_restart_s = Math.round((Date.now() - gwKilledAt) / 100) / 10;
      log(`embedded: gateway back as pid ${pid} after ${out.gateway_restart_s} s`);
    });
    gwBack.catch(() => undefined);
    await writers;
    out.outcomes = outcomes;
    await dbBack;
    await gwBack;
    // a 5xx whose request overlapped an outage (kill to back, plus a grace) is the outage's; any other is recorded
    const windows = [
      [dbKilledAt, dbKilledAt + out.db_restart_s * 1000 + OUTAGE_GRACE_MS],
      [gwKilledAt, gwKilledAt + out.gateway_restart_s * 1000 + OUTAGE_GRACE_MS],
    ];
    const outside = fivexx.filter((x) => !windows.some(([a, b]) => x.from <= b && x.to >= a));
    out['5xx_in_outages'] = fivexx.length - outside.length;
    out['5xx_outside_outages'] = outside.length;
    if (outside.length) {
      out['5xx_outside_samples'] = outside.slice(0, 5).map((x) => ({ what: x.what, status: x.status, at_s: Math.round((x.from - writeStart) / 100) / 10, body: x.body }));
      log(`embedded: ${outside.length} 5xx outside the outages: ${JSON.stringify(out['5xx_outside_samples'])}`);
    }

    // ---- everything accepted is in the store (bounded) ----
    const wantC = [...completions];
    const wantF = [...feedback];
    let storedC = new Set();
    let storedF = new Set();
    let orphans = 0;
    const storeStart = Date.now();
    await waitFor(
      async () => {
        const c = new Client({ connectionString: info()?.url || first.url, connectionTimeoutMillis: 5000 });
        c.on('error', () => undefined);
        await c.connect();
        try {
          storedC = new Set((await c.query('SELECT id FROM completions WHERE id = ANY($1)', [wantC])).rows.map((x) => x.id));
          const fb = (await c.query('SELECT id FROM feedback WHERE id = ANY($1)', [wantF])).rows.map((x) => x.id);
          const orph = (await c.query('SELECT id FROM feedback_orphans WHERE id = ANY($1)', [wantF])).rows.map((x) => x.id);
          orphans = orph.length;
          storedF = new Set([...fb, ...orph]); // an orphan is stored too: it moves into feedback with its completion
        } finally {
          await c.end().catch(() => undefined);
        }
        return storedC.size === wantC.length && storedF.size === wantF.length && orphans === 0 ? true : undefined;
      },
      STORE_WAIT_MS,
      'every accepted write in the store',
    ).catch((e) => log(`embedded: ${String(e).slice(0, 200)}`));
    out.store_caught_up_s = Math.round((Date.now() - storeStart) / 100) / 10;
    const lostC = wantC.filter((id) => !storedC.has(id));
    const lostF = wantF.filter((id) => !storedF.has(id));
    const lost = lostC.length + lostF.length;
    Object.assign(out, {
      completions_accepted: wantC.length,
      completions_stored: storedC.size,
      feedback_accepted: wantF.length,
      feedback_stored: storedF.size,
      feedback_still_orphans: orphans,
      lost,
    });
    summary.records_lost += lost;
    check(
      'embedded: nothing accepted is lost after kill -9 of the database and the gateway',
      lost === 0 && wantC.length > 0 && wantF.length > 0,
      JSON.stringify({ ...out, lost_completions: lostC.slice(0, 5), lost_feedback: lostF.slice(0, 5) }),
    );
  } catch (e) {
    out.error = String(e && e.stack ? e.stack : e).slice(0, 600);
    check('embedded: the phase ran to its end', false, out.error);
  } finally {
    // ---- Ctrl-C: exit 0 within 30 s, none of its processes left ----
    const dbPid = info()?.pid ?? lastDbPid;
    const kids = launcher.child.pid ? childrenOf(launcher.child.pid) : [];
    out.launcher_children = kids.map((c) => c.what).sort();
    launcher.expectedExit = true;
    const stopAt = Date.now();
    if (launcher.child.exitCode === null && launcher.child.signalCode === null) launcher.child.kill('SIGINT');
    let timer;
    const ended = await Promise.race([launcher.exited, new Promise((r) => (timer = setTimeout(() => r('hung'), 30_000)))]);
    clearTimeout(timer);
    out.sigint_exit = ended === 'hung' ? 'hung' : ended.code ?? ended.sig;
    out.sigint_stop_s = Math.round((Date.now() - stopAt) / 100) / 10;
    if (ended === 'hung') {
      launcher.child.kill('SIGKILL');
      await launcher.exited;
    }
    await sleep(300);
    const dbGone = dbPid ? !pidAlive(dbPid) : false;
    const kidsLeft = kids.filter((c) => pidAlive(c.pid));
    const infraSeen = ['nats-server', 'redis-server', 'embedded-postgres'].every((w) => kids.some((c) => c.what === w));
    check(
      'embedded: SIGINT stops the launcher with exit code 0 within 30 s and leaves no process (services, nats-server, redis-server, embedded Postgres)',
      ended !== 'hung' && ended.code === 0 && dbGone && infraSeen && kidsLeft.length === 0 && pidsOfStateDir(stateDir).filter(pidAlive).length === 0,
      JSON.stringify({ exit: out.sigint_exit, db_pid: dbPid, db_gone: dbGone, children: out.launcher_children, left: kidsLeft }),
    );
    // whatever this launcher left behind (only on failure): its processes, by pid
    const left = [...new Set([...pidsOfStateDir(stateDir).filter(pidAlive), ...kidsLeft.map((c) => c.pid), ...(dbPid && !dbGone ? [dbPid] : [])])];
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    if (left.length) out.killed_leftovers = left.length;
    agent.destroy();
    fs.rmSync(stateDir, { recursive: true, force: true });
    out.phase_s = Math.round((Date.now() - t0) / 100) / 10;
  }
}

module.exports = { runEmbeddedPhase };
