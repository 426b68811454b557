/**
 * A Kysely dialect over embedded PGlite (see pglite.worker.ts): Postgres's compiler, adapter and
 * introspector with a driver that hands out PGlite's one connection to one user at a time, so a
 * transaction never interleaves with another query. Not a pool; not for a multi-process server.
 */
import {
  CompiledQuery,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  type QueryResult,
  type TransactionSettings,
} from 'kysely';
import type { PgliteClient } from './pglite.worker';

/**
 * Parameters cross to the worker thread by structured clone; timestamps go as ISO strings, which
 * Postgres parses the same way on both backends.
 */
function portableParameter(value: unknown): unknown {
  return value instanceof Date ? value.toISOString() : value;
}

class PgliteConnection implements DatabaseConnection {
  constructor(private readonly db: PgliteClient) {}

  async executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    const result = await this.db.query(query.sql, query.parameters.map(portableParameter));
    const affected = result.affectedRows;
    // PGlite reports affectedRows 0 for SELECTs; Kysely only reads it for writes.
    // Row types are the query builder's promise, as in Kysely's own drivers.
    return { rows: result.rows as R[], ...(affected !== undefined ? { numAffectedRows: BigInt(affected) } : {}) };
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error('streaming queries are not supported on PGlite');
  }
}

class PgliteDriver implements Driver {
  private readonly connection: PgliteConnection;
  /** Tail of the queue of users of the one connection. */
  private tail: Promise<void> = Promise.resolve();
  private readonly releases = new Map<DatabaseConnection, () => void>();

  constructor(private readonly db: PgliteClient) {
    this.connection = new PgliteConnection(db);
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    let release!: () => void;
    const previous = this.tail;
    this.tail = new Promise<void>((resolve) => (release = resolve));
    await previous;
    this.releases.set(this.connection, release);
    return this.connection;
  }

  async beginTransaction(conn: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    const isolation = settings.isolationLevel ? ` isolation level ${settings.isolationLevel}` : '';
    await conn.executeQuery(CompiledQuery.raw(`begin${isolation}`));
  }

  async commitTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('commit'));
  }

  async rollbackTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw('rollback'));
  }

  async releaseConnection(conn: DatabaseConnection): Promise<void> {
    const release = this.releases.get(conn);
    this.releases.delete(conn);
    release?.();
  }

  async destroy(): Promise<void> {
    await this.tail;
    await this.db.close();
  }
}

export class PgliteDialect implements Dialect {
  constructor(private readonly db: PgliteClient) {}

  createDriver(): Driver {
    return new PgliteDriver(this.db);
  }
  createQueryCompiler() {
    return new PostgresQueryCompiler();
  }
  createAdapter() {
    return new PostgresAdapter();
  }
  createIntrospector(db: Kysely<any>) {
    return new PostgresIntrospector(db);
  }
}
