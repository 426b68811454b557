/**
 * The review inbox's read: feedback newest first with filters (review status, kind, policy version,
 * flagged, date range, text) and keyset pagination. A page is one range scan of a
 * `(filter, created_at DESC, id DESC)` index from the cursor, so page 1000 costs what page 1 does.
 * The same for completions (listCompletionInbox). Reads only; the admin API shapes the answer.
 */
import { sql, type Kysely } from 'kysely';
import type { FeedbackKind, ReviewStatus } from '@flywheel/contracts';
import type { CompletionRow, FeedbackRow, StoreTables } from './store.tables';

export interface InboxFilters {
  status?: ReviewStatus;
  kind?: FeedbackKind;
  policyVersion?: string;
  /** Only flags (`kind = 'flag'`). */
  flagged?: boolean;
  /** created_at ≥ from and < to. */
  from?: Date;
  to?: Date;
  /** Case-insensitive substring of the comment or the corrected/flagged text (trigram index). */
  text?: string;
}

/** Position after the last row of a page. created_at has millisecond precision (set from ISO strings). */
export interface InboxCursor {
  createdAt: Date;
  id: string;
}

export interface InboxPage {
  rows: FeedbackRow[];
  /** null on the last page. */
  next: InboxCursor | null;
}

export function encodeInboxCursor(cursor: InboxCursor): string {
  return Buffer.from(JSON.stringify([cursor.createdAt.toISOString(), cursor.id])).toString('base64url');
}

/** null for anything that is not a cursor this module made. */
export function decodeInboxCursor(text: string): InboxCursor | null {
  try {
    const value: unknown = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
    if (!Array.isArray(value) || value.length !== 2 || typeof value[0] !== 'string' || typeof value[1] !== 'string') return null;
    const createdAt = new Date(value[0]);
    return Number.isNaN(createdAt.getTime()) ? null : { createdAt, id: value[1] };
  } catch {
    return null;
  }
}

const escapeLike = (text: string) => text.replace(/[\\%_]/g, (c) => `\\${c}`);

export async function listFeedbackInbox(db: Kysely<StoreTables>, filters: InboxFilters, after: InboxCursor | null, limit: number): Promise<InboxPage> {
  let q = db.selectFrom('feedback').selectAll();
  if (filters.status) q = q.where('review_status', '=', filters.status);
  if (filters.kind) q = q.where('kind', '=', filters.kind);
  if (filters.flagged) q = q.where('kind', '=', 'flag');
  if (filters.policyVersion) q = q.where('policy_version', '=', filters.policyVersion);
  if (filters.from) q = q.where('created_at', '>=', filters.from);
  if (filters.to) q = q.where('created_at', '<', filters.to);
  if (filters.text) q = q.where('search_text', 'ilike', `%${escapeLike(filters.text)}%`);
  if (after) q = q.where((eb) => eb(eb.refTuple('created_at', 'id'), '<', eb.tuple(after.createdAt, after.id)));
  const rows = await q.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit + 1).execute();
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return { rows: page, next: rows.length > limit && last ? { createdAt: last.created_at, id: last.id } : null };
}

export interface CompletionInboxFilters {
  /** The completion's own review status (derived from its feedback by review.writes.ts). */
  status?: ReviewStatus;
  policyVersion?: string;
  /** Moderation flagged it, or a flag feedback arrived. */
  flagged?: boolean;
  from?: Date;
  to?: Date;
  /** Case-insensitive substring of the prompt or choice texts (trigram index). */
  text?: string;
}

export interface CompletionInboxRow {
  id: string;
  created_at: Date;
  endpoint: CompletionRow['endpoint'];
  model: string;
  policy_version: string;
  outcome: CompletionRow['outcome'];
  flagged: boolean;
  review_status: ReviewStatus;
  choice_count: number;
  feedback_count: number;
  preview: string;
}

export interface CompletionInboxPage {
  rows: CompletionInboxRow[];
  next: InboxCursor | null;
}

export const INBOX_PREVIEW_CHARS = 200;

/** Completions newest first: the same keyset walk over the `completions_*_created_idx` indexes. */
export async function listCompletionInbox(
  db: Kysely<StoreTables>,
  filters: CompletionInboxFilters,
  after: InboxCursor | null,
  limit: number,
): Promise<CompletionInboxPage> {
  let q = db
    .selectFrom('completions as c')
    .select((eb) => [
      'c.id',
      'c.created_at',
      'c.endpoint',
      'c.model',
      'c.policy_version',
      'c.outcome',
      'c.flagged',
      'c.review_status',
      sql<number>`jsonb_array_length(c.choices)`.as('choice_count'),
      eb.selectFrom('feedback as f').select(sql<number>`count(*)::int`.as('n')).whereRef('f.completion_id', '=', 'c.id').as('feedback_count'),
      sql<string>`left(c.search_text, ${sql.lit(INBOX_PREVIEW_CHARS)})`.as('preview'),
    ]);
  if (filters.status) q = q.where('c.review_status', '=', filters.status);
  if (filters.policyVersion) q = q.where('c.policy_version', '=', filters.policyVersion);
  if (filters.flagged) q = q.where('c.flagged', '=', true);
  if (filters.from) q = q.where('c.created_at', '>=', filters.from);
  if (filters.to) q = q.where('c.created_at', '<', filters.to);
  if (filters.text) q = q.where('c.search_text', 'ilike', `%${escapeLike(filters.text)}%`);
  if (after) q = q.where((eb) => eb(eb.refTuple('c.created_at', 'c.id'), '<', eb.tuple(after.createdAt, after.id)));
  const rows = await q.orderBy('c.created_at', 'desc').orderBy('c.id', 'desc').limit(limit + 1).execute();
  const page = rows.slice(0, limit).map((r) => ({ ...r, feedback_count: Number(r.feedback_count ?? 0), choice_count: Number(r.choice_count) }));
  const last = page[page.length - 1];
  return { rows: page, next: rows.length > limit && last ? { createdAt: last.created_at, id: last.id } : null };
}

/** The first INBOX_PREVIEW_CHARS of each completion's texts, by id (ids not stored are absent). */
export async function completionPreviews(db: Kysely<StoreTables>, ids: readonly string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const rows = await db
    .selectFrom('completions')
    .select(['id', sql<string>`left(search_text, ${sql.lit(INBOX_PREVIEW_CHARS)})`.as('preview')])
    .where('id', 'in', [...new Set(ids)])
    .execute();
  return new Map(rows.map((r) => [r.id, r.preview]));
}

/** Every policy version completions were served with, sorted (a loose scan of the policy index would be faster; 100k rows take ~20 ms). */
export async function listPolicyVersions(db: Kysely<StoreTables>): Promise<string[]> {
  const rows = await db.selectFrom('completions').select('policy_version').distinct().orderBy('policy_version').execute();
  return rows.map((r) => r.policy_version);
}

/** Feedback waiting for review: what the inbox's default view (status pending) holds; the review backlog gauge. */
export async function countPendingFeedback(db: Kysely<StoreTables>): Promise<number> {
  const row = await db.selectFrom('feedback').select(sql<number>`count(*)::int`.as('n')).where('review_status', '=', 'pending').executeTakeFirstOrThrow();
  return Number(row.n);
}
