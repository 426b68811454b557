/**
 * Opens the store: Postgres through a `pg` pool, then applies every pending migration. The same path serves a
 * real server (DATABASE_URL) and the default install's embedded Postgres (embedded-postgres.ts, which the
 * launcher runs and hands every service as DATABASE_URL). Throws when the database cannot be reached or a
 * migration fails; retrying is the caller's business.
 */
import { Kysely, Migrator, PostgresDialect, type MigrationResultSet } from 'kysely';
import { Pool } from 'pg';
import { storeMigrationProvider } from './store.migrations';
import type { StoreTables } from './store.tables';

export interface StoreTarget {
  url: string;
  poolSize?: number;
}

/** Why a service without DATABASE_URL has no store: said wherever the store is missing (logs, API errors). */
export const NO_DATABASE_URL =
  'no DATABASE_URL: start the mesh with `npm start`, which runs the embedded Postgres and hands its URL to every service, or set DATABASE_URL';

export interface Store {
  readonly db: Kysely<StoreTables>;
  close(): Promise<void>;
}

export interface OpenStoreOptions {
  /** Called for errors of pooled connections outside a running query (database restarted, network cut, backend terminated): log, don't crash. */
  onIdleError?: (err: Error) => void;
}

export async function openStore(target: StoreTarget, options: OpenStoreOptions = {}): Promise<Store> {
  const db = postgresDb(target, options);
  try {
    await migrateStore(db);
  } catch (err) {
    await db.destroy().catch(() => undefined);
    throw err;
  }
  return { db, close: () => db.destroy() };
}

export async function migrateStore(db: Kysely<StoreTables>): Promise<MigrationResultSet> {
  const migrator = new Migrator({ db, provider: storeMigrationProvider });
  const result = await migrator.migrateToLatest();
  if (result.error) {
    const failed = result.results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
    const cause = result.error instanceof Error ? result.error.message : String(result.error);
    throw new Error(`store migration ${failed} failed: ${cause}`);
  }
  return result;
}

function postgresDb(target: StoreTarget, options: OpenStoreOptions): Kysely<StoreTables> {
  const pool = new Pool({
    connectionString: target.url,
    max: target.poolSize ?? 5,
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: 30_000,
  });
  // An idle client's socket error is emitted on the pool; unhandled, it would kill the process.
  pool.on('error', (err) => options.onIdleError?.(err));
  // pg-pool listens only while a client is idle: a backend terminated while its client is checked out
  // between two queries (a transaction, a reserved connection) emits 'error' on the client with no
  // listener, which would kill the process. Report it; the failed query rejects, the pool drops the client.
  pool.on('connect', (client) => client.on('error', (err: Error) => options.onIdleError?.(err)));
  return new Kysely<StoreTables>({ dialect: new PostgresDialect({ pool }) });
}
