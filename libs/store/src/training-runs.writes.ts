/**
 * Writes of training runs for the trainer: create a run (idempotent per id, so a retried job creates it
 * once), patch its status / stage / summary metrics / error, and append per-step metrics (upserted per
 * step, so a resumed job re-logging a step overwrites it). Reads are in training-runs.queries.ts.
 */
import { sql, type Kysely, type UpdateObject } from 'kysely';
import type { TrainingRun, TrainingRunKind, TrainingRunStatus, TrainingStepMetrics } from '@flywheel/contracts';
import type { StoreTables } from './store.tables';
import { findTrainingRun } from './training-runs.queries';

export interface NewTrainingRun {
  id: string;
  kind: TrainingRunKind;
  /** Default `queued`; `running` also sets started_at (now, unless given). */
  status?: TrainingRunStatus;
  parentRunId?: string | null;
  stage?: string | null;
  baseVersion?: string | null;
  exportId?: string | null;
  config?: Record<string, unknown>;
  startedAt?: Date | null;
}

export interface TrainingRunPatch {
  /**
   * `running` sets started_at (if unset) and clears finished_at; `succeeded` / `failed` / `cancelled` set
   * finished_at (if unset). startedAt / finishedAt given here win over both.
   */
  status?: TrainingRunStatus;
  stage?: string | null;
  /** Merged into the summary (keys given replace those keys; the others stay). */
  metrics?: Record<string, unknown>;
  error?: string | null;
  startedAt?: Date | null;
  finishedAt?: Date | null;
}

export interface TrainingMetricPointInput {
  step: number;
  metrics: TrainingStepMetrics;
}

const TERMINAL: ReadonlySet<TrainingRunStatus> = new Set(['succeeded', 'failed', 'cancelled']);
const METRICS_BATCH = 1_000;

/** Inserts the run unless its id exists (then changes nothing); returns the stored run either way. */
export async function createTrainingRun(db: Kysely<StoreTables>, run: NewTrainingRun): Promise<TrainingRun> {
  const status = run.status ?? 'queued';
  await db
    .insertInto('training_runs')
    .values({
      id: run.id,
      kind: run.kind,
      status,
      parent_run_id: run.parentRunId ?? null,
      stage: run.stage ?? null,
      base_version: run.baseVersion ?? null,
      export_id: run.exportId ?? null,
      config: JSON.stringify(run.config ?? {}),
      metrics: '{}',
      started_at: run.startedAt ?? (status === 'running' ? new Date() : null),
      finished_at: TERMINAL.has(status) ? new Date() : null,
    })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute();
  const stored = await findTrainingRun(db, run.id);
  if (!stored) throw new Error(`training run ${run.id} vanished right after it was written`);
  return stored;
}

/** Applies the patch; returns the run after it, or null when no run has that id. */
export async function updateTrainingRun(db: Kysely<StoreTables>, id: string, patch: TrainingRunPatch): Promise<TrainingRun | null> {
  const set: UpdateObject<StoreTables, 'training_runs'> = {};
  if (patch.status !== undefined) {
    set.status = patch.status;
    if (patch.status === 'running') {
      set.started_at = sql<Date>`coalesce(started_at, now())`;
      set.finished_at = null;
    } else if (TERMINAL.has(patch.status)) {
      set.finished_at = sql<Date>`coalesce(finished_at, now())`;
    }
  }
  if (patch.stage !== undefined) set.stage = patch.stage;
  if (patch.error !== undefined) set.error = patch.error;
  if (patch.metrics !== undefined) set.metrics = sql<string>`metrics || ${JSON.stringify(patch.metrics)}::jsonb`;
  if (patch.startedAt !== undefined) set.started_at = patch.startedAt;
  if (patch.finishedAt !== undefined) set.finished_at = patch.finishedAt;
  if (Object.keys(set).length > 0) await db.updateTable('training_runs').set(set).where('id', '=', id).execute();
  return findTrainingRun(db, id);
}

/**
 * Stores each point under (run, step), replacing a step stored before; within one call the last point of
 * a step wins. Non-finite numbers are stored as null (JSON has no NaN). Throws for an unknown run (foreign key).
 */
export async function appendTrainingMetrics(db: Kysely<StoreTables>, runId: string, points: readonly TrainingMetricPointInput[]): Promise<void> {
  const byStep = new Map<number, TrainingStepMetrics>();
  for (const p of points) {
    if (!Number.isInteger(p.step) || p.step < 0) throw new Error(`training metrics of ${runId}: step must be an integer ≥ 0, got ${p.step}`);
    byStep.set(p.step, p.metrics);
  }
  const rows = [...byStep].map(([step, metrics]) => ({ run_id: runId, step, metrics: JSON.stringify(finiteOrNull(metrics)) }));
  for (let i = 0; i < rows.length; i += METRICS_BATCH) {
    await db
      .insertInto('training_metrics')
      .values(rows.slice(i, i + METRICS_BATCH))
      .onConflict((oc) => oc.columns(['run_id', 'step']).doUpdateSet({ metrics: (eb) => eb.ref('excluded.metrics'), created_at: sql<Date>`now()` }))
      .execute();
  }
}

function finiteOrNull(metrics: TrainingStepMetrics): TrainingStepMetrics {
  const out: TrainingStepMetrics = {};
  for (const [name, v] of Object.entries(metrics)) out[name] = typeof v === 'number' && Number.isFinite(v) ? v : null;
  return out;
}
