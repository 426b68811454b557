/**
 * The mesh a whole loop run needs in an integration test: a PRIVATE nats-server (the run writes the `models` KV), the
 * machine's Redis under the test's prefix, a throwaway Postgres database, and the compiled trainer, reward and
 * moderation services on stories260K, ready. `close()` stops and removes all of it. Not for tests that need a
 * gateway or policy (see admin-gateway.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import IORedis from 'ioredis';
import type { NatsConnection } from 'nats';
import { connectMesh, drainQuietly, MeshClient } from '@flywheel/mesh';
import { createThrowawayDatabase, type ThrowawayDatabase } from '@flywheel/store/testing';
import { freePort, getJson, portsEnv, repoRoot, run, serviceEntry, stop, waitFor, type Running } from './processes';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';

export interface LoopMesh {
  natsUrl: string;
  nc: NatsConnection;
  mesh: MeshClient;
  database: ThrowawayDatabase;
  redis: IORedis;
  services: Running[];
  /** The last lines of every service's output, for failure messages. */
  logs(): string;
  close(): Promise<void>;
}

/** Starts it all under `work` (removed on close), services with FLYWHEEL_STATE_DIR `stateDir` and the queue `prefix`. */
export async function startLoopMesh(o: { name: string; prefix: string; work: string; stateDir: string }): Promise<LoopMesh> {
  const natsPort = await freePort();
  const nats: ChildProcess = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(natsPort), '-sd', path.join(o.work, 'nats')], { stdio: 'ignore' });
  const natsUrl = `nats://127.0.0.1:${natsPort}`;
  const nc = await waitFor(() => connectMesh({ servers: [natsUrl], name: o.name }), 10_000, 'private nats-server');
  const database = await createThrowawayDatabase(ADMIN_URL);
  const redis = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
  const env: Record<string, string> = {
    ...(await portsEnv()),
    NATS_URL: natsUrl,
    REDIS_URL,
    DATABASE_URL: database.url,
    FLYWHEEL_STATE_DIR: o.stateDir,
    FLYWHEEL_QUEUE_PREFIX: o.prefix,
    FLYWHEEL_MODEL: path.join(repoRoot, 'models', 'stories260K'),
    FLYWHEEL_LOOP_MIN_NEW_APPROVED: '0',
    FLYWHEEL_TRAINER_THREADS: '1',
    FLYWHEEL_REWARD_THREADS: '1',
  };
  const services = (['trainer', 'reward', 'moderation'] as const).map((s) => run(process.execPath, [serviceEntry(s)], env));
  await Promise.all(
    (['TRAINER', 'REWARD', 'MODERATION'] as const).map((s) =>
      waitFor(async () => ((await getJson(`http://127.0.0.1:${env[`FLYWHEEL_${s}_PORT`]}/readyz`)).status === 200 ? true : undefined), 60_000, `${s.toLowerCase()} ready`),
    ),
  );
  return {
    natsUrl,
    nc,
    mesh: new MeshClient(nc),
    database,
    redis,
    services,
    logs: () => services.map((s) => s.output().slice(-2500)).join('\n----\n'),
    async close() {
      await Promise.all(services.map((s) => stop(s)));
      await drainQuietly(nc);
      nats.kill('SIGTERM');
      const keys = await redis.keys(`${o.prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
      await database.drop();
      rmSync(o.work, { recursive: true, force: true });
    },
  };
}
