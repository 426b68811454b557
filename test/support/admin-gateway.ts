/**
 * The admin tests' shared fixture: a compiled gateway (no policy) on a private nats-server and a throwaway
 * Postgres database, with a user key and an admin key, waited for until its store answers; a NATS connection
 * and a store reader on the same database for the test's own seeding and checks; one call tears all of it down.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { openStore, type Store } from '@flywheel/store';
import { createThrowawayDatabase, type ThrowawayDatabase } from '@flywheel/store/testing';
import { startPrivateNats, type PrivateNats } from '../gateway.support';
import { freePort, run, serviceEntry, stop, waitFor, type Running } from './processes';

const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';

export interface AdminGateway {
  gateway: Running;
  gatewayUrl: string;
  stateDir: string;
  nats: PrivateNats;
  database: ThrowawayDatabase;
  nc: NatsConnection;
  /** A second connection to the gateway's database. */
  store: Store;
  close(): Promise<void>;
}

export async function startAdminGateway(o: { userKey: string; adminKey: string; name: string; uiDir?: (stateDir: string) => string }): Promise<AdminGateway> {
  const stateDir = mkdtempSync(path.join(tmpdir(), `flywheel-${o.name}-`));
  const nats = await startPrivateNats();
  const database = await createThrowawayDatabase(ADMIN_URL);
  const port = await freePort();
  const gatewayUrl = `http://127.0.0.1:${port}`;
  const gateway = run(process.execPath, [serviceEntry('gateway')], {
    NATS_URL: nats.url,
    DATABASE_URL: database.url,
    FLYWHEEL_GATEWAY_PORT: String(port),
    FLYWHEEL_API_KEYS: o.userKey,
    FLYWHEEL_ADMIN_KEYS: o.adminKey,
    FLYWHEEL_ADMIN_UI_DIR: o.uiDir ? o.uiDir(stateDir) : path.join(stateDir, 'no-ui'),
    FLYWHEEL_RATE_LIMIT_RPM: '0',
    FLYWHEEL_STATE_DIR: stateDir,
    FLYWHEEL_LOG_LEVEL: 'warn',
  });
  await waitFor(
    async () => {
      const res = await fetch(`${gatewayUrl}/v1/feedback?completion_id=chatcmpl-none`, { headers: { authorization: `Bearer ${o.userKey}` } }).catch(() => null);
      return res?.status === 200 ? true : undefined;
    },
    60_000,
    'gateway with its store open',
  ).catch((err) => {
    throw new Error(`${String(err)}\n--- gateway ---\n${gateway.output().slice(-3000)}`);
  });
  const nc = await connect({ servers: nats.url });
  const store = await openStore({ url: database.url });
  return {
    gateway,
    gatewayUrl,
    stateDir,
    nats,
    database,
    nc,
    store,
    async close() {
      await store.close();
      await nc.drain();
      await stop(gateway);
      await nats.stop();
      await database.drop();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}
