/**
 * The blind A/B queue's writes: an eval run's candidate-vs-active pairs queued with their A/B order drawn once here,
 * idempotent per (eval run, pair index); a reviewer's verdict on one pair, once. Reads and the per-candidate summary
 * are in ab-reviews.queries.ts. No HTTP, queue or promotion code here.
 */
import { randomInt } from 'node:crypto';
import type { Kysely } from 'kysely';
import { newTimeOrderedId } from '@flywheel/contracts';
import type { AbVerdict } from '@flywheel/contracts';
import type { AbPrompt, StoreTables } from './store.tables';


export interface AbPairsToQueue {
  evalRunId: string;
  candidateVersion: string;
  activeVersion: string;
  /** Verdicts that decide this candidate's A/B (abSummaries' `decided`). */
  minVerdicts: number;
  /** One per prompt: both versions' answer (sampled with the same seed). */
  pairs: ReadonlyArray<{ prompt: AbPrompt; candidate: string; active: string }>;
}

/**
 * Queues the pairs; a pair already queued for this eval run and index is left as it is (an eval job that runs again
 * neither duplicates nor re-draws). `candidateFirst` draws each pair's order: true shows the candidate as A.
 * Returns the number of pairs newly queued.
 */
export async function queueAbPairs(
  db: Kysely<StoreTables>,
  q: AbPairsToQueue,
  candidateFirst: () => boolean = () => randomInt(2) === 0,
): Promise<number> {
  if (q.pairs.length === 0) return 0;
  const rows = q.pairs.map((p, index) => {
    const first = candidateFirst();
    return {
      id: `ab-${newTimeOrderedId()}`,
      eval_run_id: q.evalRunId,
      pair_index: index,
      candidate_version: q.candidateVersion,
      active_version: q.activeVersion,
      prompt: JSON.stringify(p.prompt),
      output_a: first ? p.candidate : p.active,
      output_b: first ? p.active : p.candidate,
      candidate_side: first ? ('a' as const) : ('b' as const),
      min_verdicts: q.minVerdicts,
    };
  });
  const inserted = await db
    .insertInto('ab_reviews')
    .values(rows)
    .onConflict((oc) => oc.columns(['eval_run_id', 'pair_index']).doNothing())
    .returning('id')
    .execute();
  return inserted.length;
}

export type AbVerdictOutcome = { ok: true; id: string; verdict: AbVerdict } | { ok: false; code: 'not_found' | 'already_decided' };

/** A reviewer's verdict on a pending pair; a pair has one verdict, the first. */
export async function recordAbVerdict(db: Kysely<StoreTables>, id: string, verdict: AbVerdict, reviewer: string): Promise<AbVerdictOutcome> {
  const updated = await db
    .updateTable('ab_reviews')
    .set({ verdict, reviewer, decided_at: new Date() })
    .where('id', '=', id)
    .where('verdict', 'is', null)
    .returning('id')
    .executeTakeFirst();
  if (updated) return { ok: true, id, verdict };
  const exists = await db.selectFrom('ab_reviews').select('id').where('id', '=', id).executeTakeFirst();
  return { ok: false, code: exists ? 'already_decided' : 'not_found' };
}
