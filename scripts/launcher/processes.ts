/**
 * Runs the five service processes with prefixed, coloured logs and stops them together: SIGTERM to
 * all on Ctrl-C, SIGKILL to whatever is still alive after a grace period.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

const COLORS = [36, 35, 33, 32, 34, 91, 96];

export interface ManagedProcess {
  name: string;
  child: ChildProcess;
}

export function prefixLines(stream: NodeJS.ReadableStream | null, prefix: string, out: NodeJS.WritableStream) {
  if (!stream) return;
  createInterface({ input: stream }).on('line', (line) => out.write(`${prefix} ${line}\n`));
}

export function colorPrefix(name: string, index: number, width: number, color = process.stdout.isTTY): string {
  const label = `[${name}]`.padEnd(width + 2);
  return color ? `\x1b[${COLORS[index % COLORS.length]}m${label}\x1b[0m` : label;
}

export function startProcess(name: string, index: number, width: number, command: string, args: string[], env: NodeJS.ProcessEnv): ManagedProcess {
  // Children write to pipes, so Nest would drop colours anyway; NO_COLOR keeps escape codes out of log files.
  const child = spawn(command, args, { env: process.stdout.isTTY ? env : { ...env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const prefix = colorPrefix(name, index, width);
  prefixLines(child.stdout, prefix, process.stdout);
  prefixLines(child.stderr, prefix, process.stderr);
  child.on('exit', (code, signal) => {
    process.stdout.write(`${prefix} exited (${signal ?? `code ${code}`})\n`);
  });
  return { name, child };
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
