/**
 * Makes sure the infrastructure the mesh needs is reachable before the services start: NATS (with
 * JetStream) and Redis at their configured URLs. Where nothing listens on a local URL and the server
 * binary is installed, it is started here with its data in the project's state folder; otherwise one
 * line says what to install. PostgreSQL is the embedded one (embedded-store.ts) unless DATABASE_URL is set.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, openSync } from 'node:fs';
import { connect as tcpConnect } from 'node:net';
import path from 'node:path';

export interface Endpoint {
  host: string;
  port: number;
}

export function endpointOf(url: string, defaultPort: number): Endpoint {
  const u = new URL(url);
  return { host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1', port: u.port ? Number(u.port) : defaultPort };
}

export function isListening({ host, port }: Endpoint, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

const isLocal = (host: string) => ['127.0.0.1', 'localhost', '::1', '0.0.0.0'].includes(host);

function which(binary: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, binary);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this PATH entry
    }
  }
  return null;
}

export interface InfraSpec {
  name: string;
  url: string;
  defaultPort: number;
  binary: string;
  install: string;
  args: (ep: Endpoint, dataDir: string) => string[];
}

export const NATS_SPEC = (url: string): InfraSpec => ({
  name: 'NATS',
  url,
  defaultPort: 4222,
  binary: 'nats-server',
  install: 'install nats-server (Debian: apt-get install nats-server) or set NATS_URL to a running NATS with JetStream',
  args: (ep, dir) => ['-js', '-a', ep.host, '-p', String(ep.port), '-sd', dir],
});

export const REDIS_SPEC = (url: string): InfraSpec => ({
  name: 'Redis',
  url,
  defaultPort: 6379,
  binary: 'redis-server',
  install: 'install redis-server (Debian: apt-get install redis-server) or set REDIS_URL to a running Redis',
  args: (ep, dir) => ['--bind', ep.host, '--port', String(ep.port), '--dir', dir, '--save', '', '--appendonly', 'yes'],
});

export type EnsureResult = { kind: 'running' } | { kind: 'started'; child: ChildProcess } | { kind: 'missing'; message: string };

/** Reachable already, started by us, or a one-line reason why neither. */
export async function ensureInfra(spec: InfraSpec, stateDir: string): Promise<EnsureResult> {
  const ep = endpointOf(spec.url, spec.defaultPort);
  if (await isListening(ep)) return { kind: 'running' };
  if (!isLocal(ep.host)) return { kind: 'missing', message: `${spec.name} is not reachable at ${spec.url}` };
  const bin = which(spec.binary);
  if (!bin) return { kind: 'missing', message: `${spec.name} is not running at ${spec.url}: ${spec.install}` };
  const dataDir = path.resolve(stateDir, spec.binary);
  mkdirSync(dataDir, { recursive: true });
  const log = openSync(path.join(dataDir, `${spec.binary}.log`), 'a');
  const child = spawn(bin, spec.args(ep, dataDir), { stdio: ['ignore', log, log] });
  for (let i = 0; i < 100; i++) {
    if (await isListening(ep, 200)) return { kind: 'started', child };
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGTERM');
  return { kind: 'missing', message: `${spec.name} did not start (see ${path.join(dataDir, `${spec.binary}.log`)})` };
}
