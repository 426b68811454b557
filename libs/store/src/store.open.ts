/**
 * Opens the store: Postgres through a `pg` pool when a URL is given, else embedded PGlite in a folder
 * (so `npm start` needs no database server), then applies every pending migration. Throws when the
 * database cannot be reached or a migration fails; retrying is the caller's business.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Kysely, Migrator, PostgresDialect, type MigrationResultSet } from 'kysely';
import { Pool } from 'pg';
import { PgliteDialect } from './pglite.dialect';
import { startPgliteWorker } from './pglite.worker';
import { storeMigrationProvider } from './store.migrations';
import type { StoreTables } from './store.tables';

export type StoreTarget = { kind: 'postgres'; url: string; poolSize?: number } | { kind: 'pglite'; dataDir: string | null };

export interface Store {
  readonly db: Kysely<StoreTables>;
  readonly kind: StoreTarget['kind'];
  close(): Promise<void>;
}

export interface OpenStoreOptions {
  /** Called for errors of pooled connections outside a running query (database restarted, network cut, backend terminated): log, don't crash. */
  onIdleError?: (err: Error) => void;
}

/** Where config points: `DATABASE_URL` if set, else PGlite under `<stateDir>/store`. */
export function storeTargetOf(databaseUrl: string | null, stateDir: string): StoreTarget {
  return databaseUrl ? { kind: 'postgres', url: databaseUrl } : { kind: 'pglite', dataDir: `${stateDir.replace(/\/+$/, '')}/store` };
}

export async function openStore(target: StoreTarget, options: OpenStoreOptions = {}): Promise<Store> {
  const db = target.kind === 'postgres' ? postgresDb(target, options) : await pgliteDb(target.dataDir);
  try {
    await migrateStore(db);
  } catch (err) {
    await db.destroy().catch(() => undefined);
    throw err;
  }
  return { db, kind: target.kind, close: () => db.destroy() };
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

function postgresDb(target: { url: string; poolSize?: number }, options: OpenStoreOptions): Kysely<StoreTables> {
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

async function pgliteDb(dataDir: string | null): Promise<Kysely<StoreTables>> {
  if (!dataDir) return new Kysely<StoreTables>({ dialect: new PgliteDialect(await startPgliteWorker(null)) });
  mkdirSync(dataDir, { recursive: true });
  const unlock = lockDataDir(dataDir);
  try {
    const client = await startPgliteWorker(dataDir);
    const close = client.close;
    client.close = async () => {
      await close();
      unlock();
    };
    return new Kysely<StoreTables>({ dialect: new PgliteDialect(client) });
  } catch (err) {
    unlock();
    throw err;
  }
}

/**
 * PGlite is one process's database: a second process on the same folder would corrupt it. The lock
 * is a file holding the owner's pid, taken over when that process is gone (a crash leaves it behind).
 */
export function lockDataDir(dataDir: string): () => void {
  const file = `${dataDir.replace(/\/+$/, '')}.lock`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      return () => rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(readFileSync(file, 'utf8').trim());
      if (Number.isInteger(owner) && owner > 0 && isAlive(owner)) {
        throw new Error(`the embedded store ${dataDir} is in use by process ${owner}; give each gateway its own FLYWHEEL_STATE_DIR or a DATABASE_URL`);
      }
      rmSync(file, { force: true });
    }
  }
  throw new Error(`cannot lock the embedded store ${dataDir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
