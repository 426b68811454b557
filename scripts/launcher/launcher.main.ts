/**
 * `npm start`: the whole mesh on one machine. Ensures NATS and Redis (starting local ones if needed),
 * runs the embedded Postgres when no DATABASE_URL is set (one database every service reaches over the wire),
 * sets up JetStream once, then runs gateway, policy, reward, moderation and trainer as separate
 * processes (each restarted if it dies) until Ctrl-C. Configuration is the same environment the services read (see README).
 */
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { SERVICE_NAMES } from '@flywheel/contracts';
import { loadGatewayConfig, loadOrExit } from '@flywheel/config';
import { connectMesh, drainQuietly, ensureJetStream } from '@flywheel/mesh';
import { ensureInfra, NATS_SPEC, REDIS_SPEC } from './infra';
import { startEmbeddedStore, type EmbeddedStore } from './embedded-store';
import { startProcess, stopAll } from './processes';

const root = path.resolve(__dirname, '..', '..', '..');

async function main() {
  // The gateway's config is a superset of the common one: parsing it here fails fast on bad values.
  const config = loadOrExit(() => loadGatewayConfig(process.env));
  const stateDir = path.resolve(root, config.stateDir);
  const infraChildren: ChildProcess[] = [];
  for (const spec of [NATS_SPEC(config.nats.servers[0]!), REDIS_SPEC(config.redis.url)]) {
    const r = await ensureInfra(spec, stateDir);
    if (r.kind === 'missing') {
      console.error(`flywheel: ${r.message}`);
      await stopAll(infraChildren);
      process.exit(1);
    }
    if (r.kind === 'started') {
      console.log(`flywheel: started ${spec.binary} for ${spec.url} (data in ${path.join(config.stateDir, spec.binary)})`);
      infraChildren.push(r.child);
    }
  }
  let store: EmbeddedStore | null = null;
  if (!config.database.url) {
    try {
      store = await startEmbeddedStore(stateDir, (line) => console.log(`flywheel: ${line}`));
    } catch (err) {
      console.error(`flywheel: ${err instanceof Error ? err.message : String(err)}`);
      await stopAll(infraChildren);
      process.exit(1);
    }
    console.log(`flywheel: embedded Postgres at ${store.url} (data in ${path.join(config.stateDir, 'store')}; set DATABASE_URL to use a Postgres server)`);
  }
  const env = store ? { ...process.env, DATABASE_URL: store.url } : process.env;
  const nc = await connectMesh({ servers: config.nats.servers, name: 'flywheel-launcher' });
  const js = await ensureJetStream(nc);
  if (js.created.length) console.log(`flywheel: created ${js.created.join(', ')}`);
  await drainQuietly(nc);

  const width = Math.max(...SERVICE_NAMES.map((s) => s.length));
  const services = SERVICE_NAMES.map((name, i) =>
    startProcess(name, i, width, process.execPath, [path.join(root, 'dist', 'apps', name, 'src', 'main.js')], env),
  );
  console.log(`flywheel: mesh starting; health at http://127.0.0.1:${config.http.port}/healthz (Ctrl-C stops everything)`);

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`flywheel: ${signal}, stopping services`);
    await Promise.all(services.map((s) => s.stop()));
    await store?.stop();
    await stopAll(infraChildren);
    process.exit(0);
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
}

void main().catch((err) => {
  console.error(`flywheel: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
