/**
 * Runs user reward modules (a `module` reward function) in worker threads, one per module path, with a time limit
 * per call: a call past `timeoutMs` terminates the worker (an infinite loop cannot hold the reward service) and
 * scores `onError`, as does a throw, a non-finite value or a module that does not load. `.js`/`.cjs` modules are
 * required; `.mjs` imported; `.ts` transpiled with the project's TypeScript (types stripped, not checked). The
 * module exports `reward(ctx)` (or the named export) returning a number or a promise of one; ctx = {prompt,
 * response, reference}. Not the declarative functions (reward-functions.ts).
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { RewardFunction } from '@flywheel/contracts';
import type { RewardContext } from './reward-functions';

type ModuleFn = Extract<RewardFunction, { kind: 'module' }>;

/** The worker: loads the module once, then answers {id, ctx} with {id, value} or {id, error}. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const Module = require('node:module');
async function load() {
  const file = workerData.file;
  if (file.endsWith('.mjs')) return import(require('node:url').pathToFileURL(file).href);
  if (file.endsWith('.ts') || file.endsWith('.mts') || file.endsWith('.cts')) {
    const ts = require(require.resolve('typescript', { paths: [workerData.root, file] }));
    const out = ts.transpileModule(fs.readFileSync(file, 'utf8'), { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true }, fileName: file }).outputText;
    const m = new Module(file);
    m.filename = file;
    m.paths = Module._nodeModulePaths(require('node:path').dirname(file));
    m._compile(out, file);
    return m.exports;
  }
  return require(file);
}
const loaded = load();
loaded.catch(() => undefined); // reported per call
parentPort.on('message', async ({ id, ctx }) => {
  try {
    const mod = await loaded;
    const fn = mod[workerData.exportName] ?? (mod.default && mod.default[workerData.exportName]);
    if (typeof fn !== 'function') throw new Error('exports no function ' + workerData.exportName);
    const value = await fn(ctx);
    parentPort.postMessage({ id, value });
  } catch (err) {
    parentPort.postMessage({ id, error: err && err.message ? err.message : String(err) });
  }
});
`;

interface Pending {
  resolve(value: number): void;
  timer: NodeJS.Timeout;
  onError: number;
}

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
}

export class RewardModuleRunner {
  private readonly slots = new Map<string, Slot>();
  private nextId = 1;

  constructor(
    /** Relative module paths resolve from here (the reward service's working directory by default). */
    private readonly baseDir: string = process.cwd(),
    private readonly onProblem: (message: string) => void = () => undefined,
  ) {}

  run = (fn: ModuleFn, ctx: RewardContext): Promise<number> => {
    const file = path.resolve(this.baseDir, fn.path);
    const slot = this.slotFor(file, fn.export);
    const id = this.nextId++;
    return new Promise<number>((resolve) => {
      const timer = setTimeout(() => {
        this.onProblem(`reward module ${file}: no answer within ${fn.timeoutMs} ms; worker restarted`);
        this.kill(`${file}#${fn.export}`, slot);
      }, fn.timeoutMs);
      slot.pending.set(id, { resolve, timer, onError: fn.onError });
      slot.worker.postMessage({ id, ctx: { prompt: ctx.prompt, response: ctx.response, reference: ctx.reference ?? {} } });
    });
  };

  async close(): Promise<void> {
    for (const [key, slot] of [...this.slots]) this.kill(key, slot);
  }

  private slotFor(file: string, exportName: string): Slot {
    const key = `${file}#${exportName}`;
    const existing = this.slots.get(key);
    if (existing) return existing;
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { file, exportName, root: process.cwd() } });
    worker.unref();
    const slot: Slot = { worker, pending: new Map() };
    worker.on('message', (m: { id: number; value?: unknown; error?: string }) => {
      const p = slot.pending.get(m.id);
      if (!p) return;
      slot.pending.delete(m.id);
      clearTimeout(p.timer);
      if (m.error !== undefined || typeof m.value !== 'number' || !Number.isFinite(m.value)) {
        this.onProblem(`reward module ${file}: ${m.error ?? `returned ${JSON.stringify(m.value)}, not a finite number`}`);
        p.resolve(p.onError);
      } else {
        p.resolve(m.value);
      }
    });
    worker.on('error', (err) => {
      this.onProblem(`reward module ${file}: ${err.message}`);
      this.kill(key, slot);
    });
    this.slots.set(key, slot);
    return slot;
  }

  /** Ends the worker; everything it still owed scores its onError. The next call starts a fresh one. */
  private kill(key: string, slot: Slot): void {
    if (this.slots.get(key) === slot) this.slots.delete(key);
    for (const p of slot.pending.values()) {
      clearTimeout(p.timer);
      p.resolve(p.onError);
    }
    slot.pending.clear();
    void slot.worker.terminate();
  }
}
