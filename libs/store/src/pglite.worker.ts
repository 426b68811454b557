/**
 * Embedded PGlite (Postgres compiled to WASM) on its own worker thread, behind a two-call client:
 * `query(sql, params)` and `close()`. The thread keeps the database's CPU work off the service's event
 * loop, and gives PGlite a plain Node loader (its CommonJS build calls dynamic `import()` while it boots,
 * which a Jest sandbox refuses). The worker's source is plain JavaScript so it runs from src and dist alike.
 */
import { Worker } from 'node:worker_threads';

export interface PgliteQueryResult {
  rows: unknown[];
  affectedRows: number | undefined;
}

export interface PgliteClient {
  query(sql: string, params: readonly unknown[]): Promise<PgliteQueryResult>;
  close(): Promise<void>;
}

/** A database error from the worker, with Postgres's SQLSTATE when there is one. */
export class PgliteError extends Error {
  constructor(
    message: string,
    readonly code: string | null,
  ) {
    super(message);
    this.name = 'PgliteError';
  }
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { PGlite } = require(workerData.modules.pglite);
const { pg_trgm } = require(workerData.modules.pgTrgm);
(async () => {
  let db;
  try {
    db = await PGlite.create(workerData.dataDir || undefined, { extensions: { pg_trgm } });
  } catch (err) {
    parentPort.postMessage({ ready: false, message: String(err && err.message || err) });
    return;
  }
  parentPort.postMessage({ ready: true });
  parentPort.on('message', async (msg) => {
    if (msg.op === 'close') {
      await db.close().catch(() => undefined);
      parentPort.postMessage({ id: msg.id, rows: [], affectedRows: undefined });
      parentPort.close();
      return;
    }
    try {
      const result = await db.query(msg.sql, msg.params);
      parentPort.postMessage({ id: msg.id, rows: result.rows, affectedRows: result.affectedRows });
    } catch (err) {
      parentPort.postMessage({ id: msg.id, error: { message: String(err && err.message || err), code: (err && err.code) || null } });
    }
  });
})();
`;

type Reply = { id: number; rows: unknown[]; affectedRows?: number; error?: undefined } | { id: number; error: { message: string; code: string | null } };

/** Starts PGlite in `dataDir` (null: in memory); resolves once the database answers. */
export async function startPgliteWorker(dataDir: string | null): Promise<PgliteClient> {
  // Resolved here: an eval'd worker would resolve packages from the working directory, not from us.
  const modules = { pglite: require.resolve('@electric-sql/pglite'), pgTrgm: require.resolve('@electric-sql/pglite/contrib/pg_trgm') };
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { dataDir, modules } });
  const pending = new Map<number, { resolve: (r: PgliteQueryResult) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let failure: Error | null = null;

  await new Promise<void>((resolve, reject) => {
    worker.once('message', (msg: { ready: boolean; message?: string }) =>
      msg.ready ? resolve() : reject(new Error(`PGlite did not start in ${dataDir ?? 'memory'}: ${msg.message}`)),
    );
    worker.once('error', reject);
  });
  worker.on('message', (reply: Reply) => {
    const waiter = pending.get(reply.id);
    if (!waiter) return;
    pending.delete(reply.id);
    if (reply.error) waiter.reject(new PgliteError(reply.error.message, reply.error.code));
    else waiter.resolve({ rows: reply.rows, affectedRows: reply.affectedRows });
  });
  const failAll = (err: Error) => {
    failure = err;
    for (const waiter of pending.values()) waiter.reject(err);
    pending.clear();
  };
  worker.on('error', failAll);
  worker.on('exit', (code) => failAll(new Error(`the PGlite worker exited (code ${code})`)));

  const send = (msg: { op: 'query'; sql: string; params: readonly unknown[] } | { op: 'close' }) =>
    new Promise<PgliteQueryResult>((resolve, reject) => {
      if (failure) return reject(failure);
      const id = nextId++;
      pending.set(id, { resolve, reject });
      worker.postMessage({ id, ...msg });
    });

  return {
    query: (sql, params) => send({ op: 'query', sql, params }),
    close: async () => {
      if (!failure) await send({ op: 'close' }).catch(() => undefined);
      await worker.terminate();
    },
  };
}
