/**
 * The embedded Postgres of the default install: PGlite (Postgres compiled to WASM) in a child process of its
 * own, serving the Postgres wire protocol on 127.0.0.1, so every service
 * reaches it with `pg` exactly as it would reach a real server — one database, one code path. The caller owns
 * the data folder through a lock file (a second owner is refused) and may restart the child on the same port
 * after a crash. Not a production database: PGlite runs one query at a time (for one machine, evaluation, demos).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

export interface EmbeddedPostgres {
  /** `postgresql://postgres@127.0.0.1:<port>/postgres` — what the services get as DATABASE_URL. */
  readonly url: string;
  readonly port: number;
  /** The child process serving it. */
  readonly child: ChildProcess;
  /** Resolves with the child's exit code (null when a signal ended it). */
  readonly exited: Promise<number | null>;
  /** Stops the server: a clean PGlite close (checkpointed data), SIGKILL if it does not end within 10 s. */
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  /** Data folder (created when missing); null keeps the database in memory. */
  dataDir: string | null;
  /** 0 (the default) asks the OS for a free port. */
  port?: number;
  /** Milliseconds to wait for the server to answer (PGlite's first boot initialises the folder: seconds). */
  startTimeoutMs?: number;
  /** Where the child's stderr goes, line by line. */
  onLog?: (line: string) => void;
}

/**
 * The server, run in the child as plain JavaScript (`node -e`), so it starts the same from src under Jest and
 * from dist. PGlite is one backend: every connection's messages run on it, so a connection holds it from the
 * first message of a batch to the Sync or simple Query that ends it, and for as long as it is inside a
 * transaction — otherwise another connection's Parse could land between this one's Parse and Bind (the unnamed
 * statement is the backend's, not the connection's), which @electric-sql/pglite-socket's per-message queue
 * allows. A connection that closes inside a transaction is rolled back. The child exits when its stdin closes:
 * the owner died, and an orphan must not keep the folder open.
 */
const SERVER_SOURCE = `
process.title = 'flywheel-embedded-postgres';
const net = require('node:net');
const { PGlite } = require(process.env.FLYWHEEL_PGLITE_MODULE);
const { pg_trgm } = require(process.env.FLYWHEEL_PGLITE_TRGM_MODULE);
const SSL_REQUEST = 80877103, GSSENC_REQUEST = 80877104, CANCEL_REQUEST = 80877102;
let db;
let owner = null;
const waiters = [];
const acquire = (conn) => {
  if (owner === conn) return Promise.resolve();
  if (owner === null) { owner = conn; return Promise.resolve(); }
  return new Promise((resolve) => waiters.push({ conn, resolve }));
};
const release = (conn) => {
  if (owner !== conn) return;
  const next = waiters.shift();
  owner = next ? next.conn : null;
  if (next) next.resolve();
};
const exec = (conn, message) => db.execProtocolRawStream(message, {
  onRawData: (data) => { if (!conn.closed) conn.socket.write(Buffer.from(data)); },
});
function serve(socket) {
  socket.setNoDelay(true);
  const conn = { socket, closed: false, started: false, buf: Buffer.alloc(0), chain: Promise.resolve() };
  const then = (step) => { conn.chain = conn.chain.then(step).catch((err) => {
    process.stderr.write('connection failed: ' + String((err && err.message) || err) + '\\n');
    socket.destroy();
  }); };
  const handle = async (message, type) => {
    await acquire(conn);
    if (conn.closed) return;
    await exec(conn, message);
    // Startup, Sync and simple Query end a batch; a transaction keeps the backend until it ends.
    if ((type === 0 || type === 0x53 || type === 0x51) && !db.isInTransaction()) release(conn);
  };
  socket.on('data', (chunk) => {
    conn.buf = Buffer.concat([conn.buf, chunk]);
    for (;;) {
      if (!conn.started) {
        if (conn.buf.length < 8) return;
        const length = conn.buf.readInt32BE(0);
        if (conn.buf.length < length) return;
        const code = conn.buf.readInt32BE(4);
        const message = conn.buf.subarray(0, length);
        conn.buf = conn.buf.subarray(length);
        if (code === SSL_REQUEST || code === GSSENC_REQUEST) { socket.write('N'); continue; }
        if (code === CANCEL_REQUEST) { socket.end(); return; }
        conn.started = true;
        const copy = new Uint8Array(message);
        then(() => handle(copy, 0));
        continue;
      }
      if (conn.buf.length < 5) return;
      const length = 1 + conn.buf.readInt32BE(1);
      if (conn.buf.length < length) return;
      const type = conn.buf[0];
      const copy = new Uint8Array(conn.buf.subarray(0, length));
      conn.buf = conn.buf.subarray(length);
      if (type === 0x58) { socket.end(); return; } // Terminate
      then(() => handle(copy, type));
    }
  });
  const close = () => {
    if (conn.closed) return;
    conn.closed = true;
    then(async () => {
      if (owner === conn && db.isInTransaction()) await db.exec('ROLLBACK').catch(() => undefined);
      release(conn);
    });
  };
  socket.on('close', close);
  socket.on('error', close);
}
(async () => {
  db = await PGlite.create(process.env.FLYWHEEL_PGLITE_DATA_DIR || undefined, { extensions: { pg_trgm } });
  const server = net.createServer(serve);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(process.env.FLYWHEEL_PGLITE_PORT || 0), '127.0.0.1', resolve);
  });
  process.stdout.write(JSON.stringify({ ready: true, port: server.address().port }) + '\\n');
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    server.close();
    await db.close().catch(() => undefined);
    process.exit(0);
  };
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
})().catch((err) => {
  process.stdout.write(JSON.stringify({ ready: false, message: String((err && err.message) || err) }) + '\\n');
  process.exit(1);
});
`;

export function embeddedPostgresUrl(port: number): string {
  return `postgresql://postgres@127.0.0.1:${port}/postgres`;
}

/** Starts the server in a child process; resolves once it listens. The caller holds the folder's lock. */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  if (options.dataDir) mkdirSync(options.dataDir, { recursive: true });
  const child = spawn(process.execPath, ['-e', SERVER_SOURCE], {
    stdio: ['pipe', 'pipe', 'pipe'],
    // Its own process group: a Ctrl-C in the terminal reaches the owner, which stops it after the services.
    detached: true,
    env: {
      ...process.env,
      // Resolved here: a `node -e` child resolves packages from its working directory, not from us.
      FLYWHEEL_PGLITE_MODULE: require.resolve('@electric-sql/pglite'),
      FLYWHEEL_PGLITE_TRGM_MODULE: require.resolve('@electric-sql/pglite/contrib/pg_trgm'),
      FLYWHEEL_PGLITE_DATA_DIR: options.dataDir ?? '',
      FLYWHEEL_PGLITE_PORT: String(options.port ?? 0),
    },
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => {
    stderr.push(line);
    if (stderr.length > 20) stderr.shift();
    options.onLog?.(line);
  });
  const lines = createInterface({ input: child.stdout! });
  const timeoutMs = options.startTimeoutMs ?? 60_000;
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the embedded Postgres did not start within ${timeoutMs} ms`)), timeoutMs);
      lines.once('line', (line) => {
        clearTimeout(timer);
        try {
          const msg = JSON.parse(line) as { ready: boolean; port?: number; message?: string };
          if (msg.ready && typeof msg.port === 'number') resolve(msg.port);
          else reject(new Error(`the embedded Postgres did not start in ${options.dataDir ?? 'memory'}: ${msg.message ?? line}`));
        } catch {
          reject(new Error(`the embedded Postgres said: ${line}`));
        }
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`the embedded Postgres exited (code ${code}) before it listened: ${stderr.join(' | ')}`));
      });
    });
    let stopped: Promise<void> | null = null;
    return {
      url: embeddedPostgresUrl(port),
      port,
      child,
      exited,
      stop: () =>
        (stopped ??= (async () => {
          if (child.exitCode !== null || child.signalCode !== null) return;
          child.stdin?.end();
          const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
          await exited;
          clearTimeout(timer);
        })()),
    };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}

/**
 * PGlite is one process's database: a second server on the same folder would corrupt it. The lock is a file
 * beside the folder holding the owner's pid, taken over when that process is gone (a crash leaves it behind).
 * Returns the release function.
 */
export function lockDataDir(dataDir: string, owner = process.pid): () => void {
  const file = `${dataDir.replace(/\/+$/, '')}.lock`;
  mkdirSync(dataDir, { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(owner), { flag: 'wx' });
      return () => rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(readFileSync(file, 'utf8').trim());
      if (Number.isInteger(holder) && holder > 0 && isAlive(holder)) {
        throw new Error(`the embedded store ${dataDir} is in use by process ${holder} (another npm start?); stop it, or give this one its own FLYWHEEL_STATE_DIR or a DATABASE_URL`);
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

/** The folder locked and its server started: what tests and one-off tools use. `stop` also releases the lock. */
export async function startLockedEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgres> {
  const unlock = options.dataDir ? lockDataDir(options.dataDir) : () => undefined;
  try {
    const pg = await startEmbeddedPostgres(options);
    const stop = pg.stop;
    return {
      ...pg,
      stop: async () => {
        await stop();
        unlock();
      },
    };
  } catch (err) {
    unlock();
    throw err;
  }
}
