/**
 * Runs the five service processes with prefixed, coloured logs, restarts one that dies on its own (kill -9,
 * out of memory, a crash) with a growing pause, and stops them together: SIGTERM to all on Ctrl-C, SIGKILL
 * to whatever is still alive after a grace period.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

const COLORS = [36, 35, 33, 32, 34, 91, 96];

export interface ManagedProcess {
  name: string;
  /** The running process (a new one after each restart). */
  readonly child: ChildProcess;
  /** Stops it for good: no restart after this. */
  stop(graceMs?: number): Promise<void>;
}

export function prefixLines(stream: NodeJS.ReadableStream | null, prefix: string, out: NodeJS.WritableStream) {
  if (!stream) return;
  createInterface({ input: stream }).on('line', (line) => out.write(`${prefix} ${line}\n`));
}

export function colorPrefix(name: string, index: number, width: number, color = process.stdout.isTTY): string {
  const label = `[${name}]`.padEnd(width + 2);
  return color ? `\x1b[${COLORS[index % COLORS.length]}m${label}\x1b[0m` : label;
}

/** A restart waits 1 s, doubling up to 30 s while the process keeps dying within 10 s of its start. */
const RESTART_MIN_MS = 1_000;
const RESTART_MAX_MS = 30_000;
const STABLE_MS = 10_000;

export function startProcess(name: string, index: number, width: number, command: string, args: string[], env: NodeJS.ProcessEnv): ManagedProcess {
  const prefix = colorPrefix(name, index, width);
  let stopped = false;
  let delayMs = RESTART_MIN_MS;
  let timer: NodeJS.Timeout | null = null;
  const spawnOnce = (): ChildProcess => {
    // Children write to pipes, so Nest would drop colours anyway; NO_COLOR keeps escape codes out of log files.
    const child = spawn(command, args, { env: process.stdout.isTTY ? env : { ...env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const startedAt = Date.now();
    prefixLines(child.stdout, prefix, process.stdout);
    prefixLines(child.stderr, prefix, process.stderr);
    child.on('exit', (code, signal) => {
      process.stdout.write(`${prefix} exited (${signal ?? `code ${code}`})\n`);
      if (stopped) return;
      const waitMs = Date.now() - startedAt > STABLE_MS ? RESTART_MIN_MS : delayMs;
      delayMs = Math.min(RESTART_MAX_MS, waitMs * 2);
      process.stdout.write(`${prefix} restarting in ${(waitMs / 1000).toFixed(0)} s\n`);
      timer = setTimeout(() => {
        timer = null;
        if (!stopped) managed.child = spawnOnce();
      }, waitMs);
    });
    return child;
  };
  const managed = {
    name,
    child: spawnOnce(),
    stop: async (graceMs?: number) => {
      stopped = true;
      if (timer) clearTimeout(timer);
      await stopAll([managed.child], graceMs);
    },
  };
  return managed;
}

export async function stopAll(children: ChildProcess[], graceMs = 10_000): Promise<void> {
  const alive = children.filter((c) => c.exitCode === null && c.signalCode === null);
  await Promise.all(
    alive.map(
      (c) =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            c.kill('SIGKILL');
          }, graceMs);
          c.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          c.kill('SIGTERM');
        }),
    ),
  );
}
