/**
 * Reads of training runs as the contracts' TrainingRun / TrainingRunDetail (camelCase, ISO times): a page of
 * runs newest first (top-level, children of one loop, or all), and one run with its per-step series, its
 * stage runs and the model versions it produced. Writes are in training-runs.writes.ts; no HTTP here.
 */
import type { Kysely, Selectable } from 'kysely';
import type { TrainingRun, TrainingRunDetail, TrainingRunKind } from '@flywheel/contracts';
import type { StoreTables, TrainingRunsTable } from './store.tables';

export interface TrainingRunFilters {
  kind?: TrainingRunKind;
  /** null: top-level runs only; an id: the stage runs of that loop; absent: every run. */
  parentRunId?: string | null;
  /** 1–500. */
  limit: number;
  /** Id of the last run of the previous page: only runs older than it (none when no run has that id). */
  before?: string;
}

const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());

export function trainingRunOf(row: Selectable<TrainingRunsTable>): TrainingRun {
  return {
    id: row.id,
    kind: row.kind,
    status: row.status,
    parentRunId: row.parent_run_id,
    stage: row.stage,
    baseVersion: row.base_version,
    exportId: row.export_id,
    config: row.config,
    metrics: row.metrics,
    error: row.error,
    createdAt: row.created_at.toISOString(),
    startedAt: iso(row.started_at),
    finishedAt: iso(row.finished_at),
  };
}

/** Newest first by (created_at, id). */
export async function listTrainingRuns(db: Kysely<StoreTables>, f: TrainingRunFilters): Promise<TrainingRun[]> {
  const limit = Math.max(1, Math.min(500, Math.floor(f.limit)));
  let q = db.selectFrom('training_runs').selectAll();
  if (f.kind) q = q.where('kind', '=', f.kind);
  if (f.parentRunId === null) q = q.where('parent_run_id', 'is', null);
  else if (f.parentRunId !== undefined) q = q.where('parent_run_id', '=', f.parentRunId);
  const before = f.before;
  if (before !== undefined) {
    q = q.where((eb) =>
      eb(
        eb.refTuple('created_at', 'id'),
        '<',
        eb.selectFrom('training_runs as b').select(['b.created_at', 'b.id']).where('b.id', '=', before).$asTuple('created_at', 'id'),
      ),
    );
  }
  const rows = await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
  return rows.map(trainingRunOf);
}

export async function findTrainingRun(db: Kysely<StoreTables>, id: string): Promise<TrainingRun | null> {
  const row = await db.selectFrom('training_runs').selectAll().where('id', '=', id).executeTakeFirst();
  return row ? trainingRunOf(row) : null;
}

/** The run, its series by step, its children oldest first, and the versions of it and of its children; null when unknown. */
export async function getTrainingRunDetail(db: Kysely<StoreTables>, id: string): Promise<TrainingRunDetail | null> {
  const run = await findTrainingRun(db, id);
  if (!run) return null;
  const [points, children] = await Promise.all([
    db.selectFrom('training_metrics').select(['step', 'metrics', 'created_at']).where('run_id', '=', id).orderBy('step').execute(),
    db.selectFrom('training_runs').selectAll().where('parent_run_id', '=', id).orderBy('created_at').orderBy('id').execute(),
  ]);
  const runIds = [id, ...children.map((c) => c.id)];
  const versions = await db
    .selectFrom('model_versions')
    .select(['id', 'role', 'status', 'training_run_id'])
    .where('training_run_id', 'in', runIds)
    .orderBy('created_at')
    .orderBy('id')
    .execute();
  return {
    ...run,
    series: points.map((p) => ({ step: p.step, metrics: p.metrics, at: p.created_at.toISOString() })),
    children: children.map(trainingRunOf),
    versions: versions.map((v) => ({ id: v.id, role: v.role, status: v.status, runId: v.training_run_id ?? id })),
  };
}
