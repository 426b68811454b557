/**
 * The review inbox's read: feedback newest first with filters (review status, kind, policy version,
 * flagged, date range, text) and keyset pagination. A page is one range scan of a
 * `(filter, created_at DESC, id DESC)` index from the cursor, so page 1000 costs what page 1 does.
 * Reads only; the admin API shapes the answer.
 */
import type { Kysely } from 'kysely';
import type { FeedbackKind, ReviewStatus } from '@flywheel/contracts';
import type { FeedbackRow, StoreTables } from './store.tables';

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
