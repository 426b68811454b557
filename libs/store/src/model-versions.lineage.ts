/**
 * Lineage of model versions as the mesh sees them: a checkpoint published to the object store becomes a
 * `candidate` row; an entry written to the `models` KV makes its row `active` (promoted_at now) and the role's
 * other active row `retired`. Idempotent (a replayed watch changes nothing twice), so every gateway replica
 * may run it. The row keeps parent, run and exports also under `metrics.lineage`, since the table has no
 * `exports` column and its foreign keys only accept a parent / run the database already knows.
 */
import { sql, type Kysely } from 'kysely';
import type { StoreTables } from './store.tables';
import type { ModelRole } from '@flywheel/contracts';

export interface LineageFacts {
  version: string;
  role: ModelRole;
  parent: string | null;
  runId: string | null;
  exports: string[];
  /** Object name in the `checkpoints` object store. */
  checkpoint: string;
  sha256: string;
}

async function knownIds(db: Kysely<StoreTables>, f: LineageFacts): Promise<{ parent: string | null; runId: string | null }> {
  const parent = f.parent ? await db.selectFrom('model_versions').select('id').where('id', '=', f.parent).executeTakeFirst() : undefined;
  const run = f.runId ? await db.selectFrom('training_runs').select('id').where('id', '=', f.runId).executeTakeFirst() : undefined;
  return { parent: parent?.id ?? null, runId: run?.id ?? null };
}

/** Inserts the candidate row, or fills the lineage of a row someone registered before (its status stays). */
export async function recordPublishedVersion(db: Kysely<StoreTables>, f: LineageFacts): Promise<void> {
  const ids = await knownIds(db, f);
  const lineage = JSON.stringify({ lineage: { parent: f.parent, runId: f.runId, exports: f.exports, sha256: f.sha256 } });
  await db
    .insertInto('model_versions')
    .values({ id: f.version, role: f.role, parent_id: ids.parent, training_run_id: ids.runId, checkpoint: f.checkpoint, status: 'candidate', metrics: lineage })
    .onConflict((oc) =>
      oc.column('id').doUpdateSet({
        checkpoint: f.checkpoint,
        parent_id: sql`coalesce(model_versions.parent_id, ${ids.parent})`,
        training_run_id: sql`coalesce(model_versions.training_run_id, ${ids.runId})`,
        metrics: sql`model_versions.metrics || ${lineage}::jsonb`,
      }),
    )
    .execute();
}

/** The KV names `f` active for its role: one transaction, the previous active row retired. */
export async function recordActiveVersion(db: Kysely<StoreTables>, f: LineageFacts, promotedAt: Date): Promise<void> {
  await recordPublishedVersion(db, f);
  await db.transaction().execute(async (tx) => {
    const row = await tx.selectFrom('model_versions').select(['status', 'promoted_at']).where('id', '=', f.version).executeTakeFirst();
    const already = row?.status === 'active' && row.promoted_at !== null && row.promoted_at.getTime() >= promotedAt.getTime();
    await tx
      .updateTable('model_versions')
      .set({ status: 'retired' })
      .where('role', '=', f.role)
      .where('status', '=', 'active')
      .where('id', '!=', f.version)
      .execute();
    if (!already) await tx.updateTable('model_versions').set({ status: 'active', promoted_at: promotedAt }).where('id', '=', f.version).execute();
  });
}
