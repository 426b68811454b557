/**
 * A training run's trail in the store: the run row (created once per id, status and summary patched as the job
 * goes) and its per-step metrics, buffered and flushed every few seconds and at the end, because the trainer opens
 * the store per use (the embedded store is one process's at a time). Store failures are logged, never fatal to
 * training: the job's own checkpoint is the source of truth, and points are upserted per step on the next flush.
 */
import { Logger } from '@nestjs/common';
import type { TrainingRunKind, TrainingStepMetrics } from '@flywheel/contracts';
import { appendTrainingMetrics, createTrainingRun, updateTrainingRun, type TrainingRunPatch } from '@flywheel/store';
import type { TrainerStore } from './trainer.store';

const FLUSH_MS = 3_000;
/** Tries of a final status patch: 0.5 + 1 + 2 + 4 + 8 s of waits between them by default. */
const FINAL_PATCH_ATTEMPTS = 6;

/** Numbers only, non-finite ones as null (NaN in JSON would break the series); the step counters are the x axis. */
export function cleanMetrics(m: Record<string, unknown>): TrainingStepMetrics {
  const out: TrainingStepMetrics = {};
  for (const [k, v] of Object.entries(m)) if (typeof v === 'number' && k !== 'step' && k !== 'steps') out[k] = Number.isFinite(v) ? v : null;
  return out;
}

export class RunRecorder {
  private readonly logger = new Logger('runs');
  private pending: { step: number; metrics: TrainingStepMetrics }[] = [];
  private lastFlush = 0;

  constructor(
    private readonly store: TrainerStore,
    readonly runId: string,
    /** First wait before retrying a final status patch (doubles per try). */
    private readonly retryMs = 500,
  ) {}

  async start(kind: TrainingRunKind, o: { parentRunId?: string | null; baseVersion?: string | null; exportId?: string | null; config?: Record<string, unknown>; stage?: string | null }): Promise<void> {
    await this.safe('create', async () => {
      await this.store.use(async (db) => {
        await createTrainingRun(db, { id: this.runId, kind, status: 'running', parentRunId: o.parentRunId ?? null, baseVersion: o.baseVersion ?? null, exportId: o.exportId ?? null, config: o.config ?? {}, stage: o.stage ?? null });
        await updateTrainingRun(db, this.runId, { status: 'running', error: null });
      });
    });
  }

  /** Queues one step's metrics; flushes when the last flush is older than a few seconds. */
  async step(step: number, metrics: object): Promise<void> {
    this.pending.push({ step, metrics: cleanMetrics({ ...metrics }) });
    if (Date.now() - this.lastFlush >= FLUSH_MS) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.pending.length === 0) return;
    const points = this.pending;
    this.pending = [];
    this.lastFlush = Date.now();
    const ok = await this.safe('metrics', () => this.store.use((db) => appendTrainingMetrics(db, this.runId, points)));
    if (!ok) this.pending = [...points, ...this.pending];
  }

  /**
   * Runs a job's training: metrics flushed when it ends, the run marked failed (with the message) when it throws,
   * except for an error `paused` says is a stop to resume later (the run stays running).
   */
  async track<T>(fn: () => Promise<T>, paused: (err: unknown) => boolean = () => false): Promise<T> {
    try {
      const out = await fn();
      await this.flush();
      return out;
    } catch (err) {
      if (paused(err)) await this.flush();
      else await this.patch({ status: 'failed', error: err instanceof Error ? err.message : String(err) });
      throw err;
    }
  }

  /**
   * A final status (succeeded / failed) is retried for a while before it is given up: a run left `running` by a
   * store blip would look alive forever on the Runs page.
   */
  async patch(p: TrainingRunPatch): Promise<void> {
    await this.flush();
    const final = p.status === 'succeeded' || p.status === 'failed';
    for (let attempt = 0; ; attempt++) {
      if (await this.safe('update', () => this.store.use((db) => updateTrainingRun(db, this.runId, p)))) return;
      if (!final || attempt + 1 >= FINAL_PATCH_ATTEMPTS) return;
      await new Promise((resolve) => setTimeout(resolve, this.retryMs * 2 ** attempt));
    }
  }

  private async safe(what: string, fn: () => Promise<unknown>): Promise<boolean> {
    try {
      await fn();
      return true;
    } catch (err) {
      this.logger.warn(`run ${this.runId}: store ${what} failed: ${err instanceof Error ? err.message : String(err)}`);
      return false;
    }
  }
}
