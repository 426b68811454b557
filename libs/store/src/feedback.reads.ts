/**
 * What the feedback API reads: whether a completion is stored (and whose it is), and the feedback on
 * one completion, including feedback still waiting for its completion in `feedback_orphans`.
 * No writes here; see record.writes.ts.
 */
import type { Kysely } from 'kysely';
import { feedbackEventSchema, type FeedbackKind, type FeedbackSource, type ReviewStatus } from '@flywheel/contracts';
import type { StoreTables } from './store.tables';

export interface StoredCompletionRef {
  id: string;
  keyId: string;
  policyVersion: string;
  choiceCount: number;
  /** Distinct prompts its choices answer (more than one only for a completions request of several prompts). */
  promptCount: number;
}

export async function findCompletionRef(db: Kysely<StoreTables>, id: string): Promise<StoredCompletionRef | null> {
  const row = await db.selectFrom('completions').select(['id', 'key_id', 'policy_version', 'choices']).where('id', '=', id).executeTakeFirst();
  if (!row) return null;
  const choices: unknown[] = Array.isArray(row.choices) ? row.choices : [];
  const prompts = new Set(choices.map((c) => (typeof c === 'object' && c !== null && 'promptIndex' in c ? c.promptIndex : 0)));
  return { id: row.id, keyId: row.key_id, policyVersion: row.policy_version, choiceCount: choices.length, promptCount: prompts.size };
}

export interface StoredFeedback {
  id: string;
  completionId: string;
  choiceIndex: number | null;
  kind: FeedbackKind;
  value: unknown;
  comment: string | null;
  author: string | null;
  source: FeedbackSource;
  keyId: string;
  createdAt: Date;
  reviewStatus: ReviewStatus;
  /** false while its completion has not reached the store. */
  attached: boolean;
}

/** Feedback on one completion posted with one API key, oldest first. */
export async function listFeedbackOfCompletion(
  db: Kysely<StoreTables>,
  completionId: string,
  keyId: string,
  limit: number,
): Promise<StoredFeedback[]> {
  const rows = await db
    .selectFrom('feedback')
    .selectAll()
    .where('completion_id', '=', completionId)
    .where('key_id', '=', keyId)
    .orderBy('created_at')
    .orderBy('id')
    .limit(limit)
    .execute();
  const attached: StoredFeedback[] = rows.map((r) => ({
    id: r.id,
    completionId: r.completion_id,
    choiceIndex: r.choice_index,
    kind: r.kind,
    value: r.value,
    comment: r.comment,
    author: r.author,
    source: r.source,
    keyId: r.key_id,
    createdAt: r.created_at,
    reviewStatus: r.review_status,
    attached: true,
  }));
  const orphans = await db.selectFrom('feedback_orphans').select('event').where('completion_id', '=', completionId).execute();
  const waiting = orphans
    .map((o) => feedbackEventSchema.parse(o.event))
    .filter((e) => e.keyId === keyId)
    .map(
      (e): StoredFeedback => ({
        id: e.id,
        completionId: e.completionId,
        choiceIndex: e.choiceIndex,
        kind: e.kind,
        value: e.value,
        comment: e.comment,
        author: e.author,
        source: e.source,
        keyId: e.keyId,
        createdAt: new Date(e.createdAt),
        reviewStatus: 'pending',
        attached: false,
      }),
    );
  return [...attached, ...waiting]
    .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || a.id.localeCompare(b.id))
    .slice(0, limit);
}
