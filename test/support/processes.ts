/**
 * Integration-test helpers: spawn the compiled services (dist/) or the launcher as real processes on
 * free ports against this machine's NATS and Redis, wait for HTTP answers, and always clean up.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import { SERVICE_NAMES, type ServiceName } from '@flywheel/contracts';

export const repoRoot = path.resolve(__dirname, '..', '..');

/**
 * A port nothing listens on, picked at random from 20000-32767: below Linux's ephemeral range (32768-60999), where
 * client sockets take their local ports from, so a connection made anywhere between this check and the service's
 * own bind cannot take it (the kernel's pick for port 0 comes from that range, and a CI run once lost a gateway to
 * EADDRINUSE that way). Never the same port twice in one process.
 */
const handedOut = new Set<number>();
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12768);
    if (handedOut.has(port) || !(await canListen(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error('no free port in 20000-32767');
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '0.0.0.0', () => srv.close(() => resolve(true)));
  });
}

export interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

export function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Running {
  const child = spawn(cmd, args, { cwd: repoRoot, env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

export function serviceEntry(service: ServiceName): string {
  return path.join(repoRoot, 'dist', 'apps', service, 'src', 'main.js');
}

export async function portsEnv(): Promise<Record<string, string>> {
  const env: Record<string, string> = {};
  for (const s of SERVICE_NAMES) env[`FLYWHEEL_${s.toUpperCase()}_PORT`] = String(await freePort());
  return env;
}

export async function waitFor<T>(probe: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

export async function getJson(url: string): Promise<{ status: number; body: any }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.json() };
}

export async function stop(r: Running | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!r || r.child.exitCode !== null || r.child.signalCode !== null) return;
  r.child.kill(signal);
  const timer = setTimeout(() => r.child.kill('SIGKILL'), 10_000);
  await r.exited;
  clearTimeout(timer);
}
