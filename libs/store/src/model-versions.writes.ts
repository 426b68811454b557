/**
 * Registering a trained model: its training run and a `candidate` model version pointing at the checkpoint,
 * in one transaction, idempotent per id (a job that runs again after registering changes nothing twice).
 * Rejection by the eval gate is here too (markVersionRejected). Promotion starts as a write to the models KV (libs/mesh model-registry); its row follows in model-versions.lineage.ts. No HTTP or queue code here.
 */
import { sql, type Kysely, type Selectable } from 'kysely';
import type { ModelVersionsTable, StoreTables, TrainingRunsTable } from './store.tables';

export type ModelVersionRow = Selectable<ModelVersionsTable>;
export type TrainingRunRow = Selectable<TrainingRunsTable>;

export interface CandidateToRegister {
  versionId: string;
  role: ModelVersionsTable['role'];
  trainingRun: {
    id: string;
    kind: TrainingRunsTable['kind'];
    baseVersion: string | null;
    exportId: string | null;
    config: Record<string, unknown>;
    startedAt: Date;
    finishedAt: Date;
  };
  /** Where the checkpoint lives (a directory path for now). */
  checkpoint: string;
  metrics: Record<string, unknown>;
}

/** Inserts (or, for an id already there, updates) the succeeded training run and its candidate version. */
export async function registerCandidateVersion(db: Kysely<StoreTables>, c: CandidateToRegister): Promise<void> {
  const metrics = JSON.stringify(c.metrics);
  await db.transaction().execute(async (tx) => {
    await tx
      .insertInto('training_runs')
      .values({
        id: c.trainingRun.id,
        kind: c.trainingRun.kind,
        status: 'succeeded',
        base_version: c.trainingRun.baseVersion,
        export_id: c.trainingRun.exportId,
        config: JSON.stringify(c.trainingRun.config),
        metrics,
        started_at: c.trainingRun.startedAt,
        finished_at: c.trainingRun.finishedAt,
      })
      // A run created before (a loop's stage, createTrainingRun) keeps its parent, stage, start and metrics so far.
      .onConflict((oc) =>
        oc.column('id').doUpdateSet({
          status: 'succeeded',
          metrics: sql<string>`training_runs.metrics || excluded.metrics`,
          started_at: sql<Date>`coalesce(training_runs.started_at, excluded.started_at)`,
          finished_at: c.trainingRun.finishedAt,
        }),
      )
      .execute();
    await tx
      .insertInto('model_versions')
      .values({
        id: c.versionId,
        role: c.role,
        parent_id: null,
        training_run_id: c.trainingRun.id,
        checkpoint: c.checkpoint,
        status: 'candidate',
        metrics,
      })
      .onConflict((oc) => oc.column('id').doUpdateSet({ checkpoint: c.checkpoint, metrics }))
      .execute();
  });
}

export async function findModelVersion(db: Kysely<StoreTables>, id: string): Promise<ModelVersionRow | null> {
  return (await db.selectFrom('model_versions').selectAll().where('id', '=', id).executeTakeFirst()) ?? null;
}

/**
 * The eval gate's evidence on a version's row (its lineage): KL to the version it was compared with and to the
 * original base, the reward gain, the verdict. Kept under `eval` whatever the row's status.
 */
export async function recordVersionEval(db: Kysely<StoreTables>, id: string, evidence: Record<string, unknown>): Promise<void> {
  await db
    .updateTable('model_versions')
    .set({ metrics: sql`model_versions.metrics || ${JSON.stringify({ eval: evidence })}::jsonb` })
    .where('id', '=', id)
    .execute();
}

/** The eval gate refused a candidate: its row says so (an active or retired row is left alone). */
export async function markVersionRejected(db: Kysely<StoreTables>, id: string, reasons: string[]): Promise<void> {
  await db
    .updateTable('model_versions')
    .set({ status: 'rejected', metrics: sql`model_versions.metrics || ${JSON.stringify({ rejected: reasons })}::jsonb` })
    .where('id', '=', id)
    .where('status', '=', 'candidate')
    .execute();
}
