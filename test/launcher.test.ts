/**
 * `npm start`'s launcher as a user runs it: it starts nats-server itself when nothing listens on the
 * configured NATS URL, runs the embedded Postgres without DATABASE_URL (one database every service reaches,
 * refused to a second launcher on the same folder, restarted after a kill -9), brings all five services up,
 * restarts one that dies, and stops everything on Ctrl-C (SIGINT); where a server is neither running nor
 * installed it says in one line what to install.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SERVICE_NAMES } from '@flywheel/contracts';
import { openStore } from '@flywheel/store';
import { isListening } from '../scripts/launcher/infra';
import { freePort, getJson, portsEnv, repoRoot, run, stop, waitFor } from './support/processes';

jest.setTimeout(120_000);
const launcher = path.join(repoRoot, 'dist', 'scripts', 'launcher', 'launcher.main.js');

describe('launcher', () => {
  let stateDir: string;
  beforeEach(() => (stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-state-'))));
  afterEach(() => rmSync(stateDir, { recursive: true, force: true }));

  it('starts its own nats-server and one embedded Postgres, runs all five services, heals a kill -9 of either, stops them all on SIGINT', async () => {
    const natsPort = await freePort();
    const env: Record<string, string> = { ...(await portsEnv()), NATS_URL: `nats://127.0.0.1:${natsPort}`, FLYWHEEL_STATE_DIR: stateDir };
    const r = run(process.execPath, [launcher], env);
    try {
      const report = await waitFor(async () => {
        const h = await getJson(`http://127.0.0.1:${env.FLYWHEEL_GATEWAY_PORT}/healthz`);
        return h.status === 200 ? h.body : undefined;
      }, 60_000, 'mesh up under the launcher');
      for (const s of SERVICE_NAMES) expect(report.services[s].status).toBe('up');
      expect(r.output()).toContain(`started nats-server for nats://127.0.0.1:${natsPort}`);
      expect(r.output()).toMatch(/\[gateway\]\s+.*listening on/);

      // One embedded Postgres, handed to every service: the gateway opened it.
      const info = () => JSON.parse(readFileSync(path.join(stateDir, 'embedded-postgres.json'), 'utf8')) as { url: string; pid: number };
      const first = info();
      expect(r.output()).toContain(`embedded Postgres at ${first.url}`);
      await waitFor(async () => (/\[gateway\].*store open on 127\.0\.0\.1/.test(r.output()) ? true : undefined), 30_000, 'gateway store open');

      // A second launcher on the same state folder is refused in one line, before it starts anything.
      const second = run(process.execPath, [launcher], { ...(await portsEnv()), NATS_URL: env.NATS_URL, FLYWHEEL_STATE_DIR: stateDir });
      expect(await second.exited).toBe(1);
      expect(second.output()).toMatch(/embedded store .* is in use by process \d+/);

      // kill -9 of the database process: back on the same URL, data intact.
      const store = await openStore({ url: first.url });
      try {
        await store.db.insertInto('dead_letters').values({ id: 'launcher-test', stream: 's', subject: 's', payload: '{}', error: 'e' }).execute();
        process.kill(first.pid, 'SIGKILL');
        const back = await waitFor(async () => {
          const now = existsSync(path.join(stateDir, 'embedded-postgres.json')) ? info() : null;
          return now && now.pid !== first.pid ? now : undefined;
        }, 30_000, 'embedded Postgres restarted');
        expect(back.url).toBe(first.url);
        const row = await store.db.selectFrom('dead_letters').select('id').where('id', '=', 'launcher-test').executeTakeFirst();
        expect(row?.id).toBe('launcher-test');
      } finally {
        await store.close();
      }

      // kill -9 of a service: the launcher starts it again.
      const policyPid = Number(String(report.services.policy.instanceId).split('-').pop());
      process.kill(policyPid, 'SIGKILL');
      await waitFor(async () => {
        const h = await getJson(`http://127.0.0.1:${env.FLYWHEEL_GATEWAY_PORT}/healthz`);
        return h.status === 200 && h.body.services.policy.instanceId !== report.services.policy.instanceId ? true : undefined;
      }, 60_000, 'policy restarted by the launcher');
      expect(r.output()).toMatch(/\[policy\]\s+restarting in 1 s/);

      const dbPid = info().pid;
      const beforeStop = r.output().length;
      r.child.kill('SIGINT');
      expect(await r.exited).toBe(0);
      expect(r.output()).toMatch(/\[policy\]\s+exited/);
      // Every service stops on its own within the launcher's grace (the gateway's store writer once outlasted it).
      expect(r.output().slice(beforeStop)).not.toMatch(/exited \(SIGKILL\)/);
      expect(await isListening({ host: '127.0.0.1', port: Number(env.FLYWHEEL_GATEWAY_PORT) })).toBe(false);
      expect(await isListening({ host: '127.0.0.1', port: natsPort })).toBe(false);
      expect(await isListening({ host: '127.0.0.1', port: Number(new URL(first.url).port) })).toBe(false);
      expect(() => process.kill(dbPid, 0)).toThrow();
      expect(existsSync(path.join(stateDir, 'store.lock'))).toBe(false);
    } finally {
      await stop(r, 'SIGKILL');
    }
  });

  it('says in one line what to install when NATS is neither running nor installed', async () => {
    const natsPort = await freePort();
    const r = run(process.execPath, [launcher], { NATS_URL: `nats://127.0.0.1:${natsPort}`, PATH: '/nonexistent', FLYWHEEL_STATE_DIR: stateDir });
    expect(await r.exited).toBe(1);
    const out = r.output().trim();
    expect(out.split('\n')).toHaveLength(1);
    expect(out).toMatch(/NATS is not running at nats:\/\/127\.0\.0\.1:\d+: install nats-server/);
  });
});
