/**
 * Reliability: a Postgres backend terminated (admin shutdown, failover, ALTER DATABASE … ALLOW_CONNECTIONS
 * false + pg_terminate_backend) while one of the pool's connections is checked out between two queries
 * (inside a transaction, or a reserved connection) must not crash the process. pg emits that error on
 * the client, and pg-pool only listens while the client is idle; found by test/reliability (the gateway
 * died with an unhandled 'error' event, code 57P01, during the database outage check).
 */
import { sql } from 'kysely';
import { createThrowawayDatabase, type ThrowawayDatabase } from './store.testing';
import { openStore, type Store } from './store.open';

jest.setTimeout(60_000);

const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';

describe('store on postgres: backend terminated while a connection is checked out', () => {
  let throwaway: ThrowawayDatabase;
  let store: Store;
  const errors: Error[] = [];

  beforeAll(async () => {
    throwaway = await createThrowawayDatabase(ADMIN_URL);
    store = await openStore({ url: throwaway.url }, { onIdleError: (err) => errors.push(err) });
  });

  afterAll(async () => {
    await store?.close();
    await throwaway?.drop();
  });

  it('reports the error instead of crashing, and the next query gets a fresh connection', async () => {
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    process.on('uncaughtException', onUncaught);
    try {
      await store.db
        .connection()
        .execute(async (conn) => {
          await sql`select 1`.execute(conn);
          await throwaway.admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${throwaway.name}' AND pid <> pg_backend_pid()`);
          await new Promise((r) => setTimeout(r, 500)); // the FATAL arrives while no query is running
          await sql`select 1`.execute(conn);
        })
        .catch(() => undefined); // the reserved connection is dead: its next query fails, that is fine
    } finally {
      process.removeListener('uncaughtException', onUncaught);
      for (const l of listeners) process.on('uncaughtException', l);
    }
    expect(uncaught).toEqual([]);
    expect(errors.some((e) => /terminat/i.test(e.message))).toBe(true);
    const again = await sql<{ one: number }>`select 1 as one`.execute(store.db);
    expect(again.rows[0].one).toBe(1);
  });
});
