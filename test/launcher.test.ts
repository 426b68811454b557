/**
 * `npm start`'s launcher as a user runs it: it starts nats-server itself when nothing listens on the
 * configured NATS URL, brings all five services up, and stops everything on Ctrl-C (SIGINT); where a
 * server is neither running nor installed it says in one line what to install.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { SERVICE_NAMES } from '@flywheel/contracts';
import { isListening } from '../scripts/launcher/infra';
import { freePort, getJson, portsEnv, repoRoot, run, stop, waitFor } from './support/processes';

jest.setTimeout(120_000);
const launcher = path.join(repoRoot, 'dist', 'scripts', 'launcher', 'launcher.main.js');

describe('launcher', () => {
  let stateDir: string;
  beforeEach(() => (stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-state-'))));
  afterEach(() => rmSync(stateDir, { recursive: true, force: true }));

  it('starts its own nats-server, runs all five services and stops them all on SIGINT', async () => {
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
      r.child.kill('SIGINT');
      expect(await r.exited).toBe(0);
      expect(r.output()).toMatch(/\[policy\]\s+exited/);
      expect(await isListening({ host: '127.0.0.1', port: Number(env.FLYWHEEL_GATEWAY_PORT) })).toBe(false);
      expect(await isListening({ host: '127.0.0.1', port: natsPort })).toBe(false);
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
