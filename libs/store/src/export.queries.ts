/**
 * Exports of approved feedback as JSONL (the `moderation` format: moderation-labels.ts; `prompts`, read from live
 * traffic: export.prompts.ts): read the approved rows (oldest first, in keyset batches), turn each into a line
 * (export.lines.ts), and record the file with its sha256 in `exports`. Also the list of exports and one export's
 * file. No HTTP here.
 */
import { createHash } from 'node:crypto';
import type { Kysely } from 'kysely';
import { newTimeOrderedId, type ExportFormat } from '@flywheel/contracts';
import { EXPORT_KINDS, exportLinesOf } from './export.lines';
import { buildModerationExport } from './moderation-labels';
import { buildPromptsExport } from './export.prompts';
import type { ExportRow, StoreTables } from './store.tables';

/** Of the feedback (of the label for `moderation`, of the completion for `prompts`). */
export interface ExportFilters {
  policyVersion?: string;
  /** created_at ≥ from and < to. */
  from?: Date;
  to?: Date;
}

export type ExportSummary = Omit<ExportRow, 'content'>;

const BATCH = 1_000;

/** The JSONL text (every line ends with "\n"; empty when nothing matches) and its line count. */
export async function buildExportContent(db: Kysely<StoreTables>, format: ExportFormat, filters: ExportFilters): Promise<{ content: string; rowCount: number }> {
  if (format === 'moderation') return buildModerationExport(db, filters);
  if (format === 'prompts') return buildPromptsExport(db, filters);
  const lines: string[] = [];
  let after: { createdAt: Date; id: string } | null = null;
  for (;;) {
    let q = db
      .selectFrom('feedback as f')
      .innerJoin('completions as c', 'c.id', 'f.completion_id')
      .select(['f.id', 'f.created_at', 'f.kind', 'f.value', 'f.choice_index', 'c.endpoint', 'c.request', 'c.messages', 'c.prompts', 'c.choices'])
      .where('f.review_status', '=', 'approved')
      .where('f.kind', 'in', [...EXPORT_KINDS[format]]);
    if (filters.policyVersion) q = q.where('f.policy_version', '=', filters.policyVersion);
    if (filters.from) q = q.where('f.created_at', '>=', filters.from);
    if (filters.to) q = q.where('f.created_at', '<', filters.to);
    const cursor: { createdAt: Date; id: string } | null = after;
    if (cursor) q = q.where((eb) => eb(eb.refTuple('f.created_at', 'f.id'), '>', eb.tuple(cursor.createdAt, cursor.id)));
    const rows = await q.orderBy('f.created_at').orderBy('f.id').limit(BATCH).execute();
    for (const row of rows) {
      const made = exportLinesOf(format, {
        kind: row.kind,
        value: row.value,
        choiceIndex: row.choice_index,
        endpoint: row.endpoint,
        request: row.request,
        messages: row.messages,
        prompts: row.prompts,
        choices: row.choices,
      });
      lines.push(...made);
    }
    const last = rows[rows.length - 1];
    if (rows.length < BATCH || !last) break;
    after = { createdAt: last.created_at, id: last.id };
  }
  return { content: lines.map((l) => `${l}\n`).join(''), rowCount: lines.length };
}

/** Builds the file and records it; the row's filters are stored as given (ISO dates). */
export async function createExport(
  db: Kysely<StoreTables>,
  request: { format: ExportFormat; filters: ExportFilters; filtersRecord: Record<string, unknown>; createdBy: string },
  now: Date = new Date(),
): Promise<ExportSummary> {
  const { content, rowCount } = await buildExportContent(db, request.format, request.filters);
  return db
    .insertInto('exports')
    .values({
      id: `exp-${newTimeOrderedId(now.getTime())}`,
      format: request.format,
      filters: JSON.stringify(request.filtersRecord),
      row_count: rowCount,
      bytes: Buffer.byteLength(content, 'utf8'),
      sha256: createHash('sha256').update(content, 'utf8').digest('hex'),
      created_by: request.createdBy,
      created_at: now,
      content,
    })
    .returning(['id', 'format', 'filters', 'row_count', 'bytes', 'sha256', 'created_by', 'created_at'])
    .executeTakeFirstOrThrow();
}

/** Newest first. */
export async function listExports(db: Kysely<StoreTables>, limit: number): Promise<ExportSummary[]> {
  return db
    .selectFrom('exports')
    .select(['id', 'format', 'filters', 'row_count', 'bytes', 'sha256', 'created_by', 'created_at'])
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(limit)
    .execute();
}

export async function findExport(db: Kysely<StoreTables>, id: string): Promise<ExportRow | null> {
  return (await db.selectFrom('exports').selectAll().where('id', '=', id).executeTakeFirst()) ?? null;
}

/**
 * Approved feedback of an export format reviewed after `since` (all when null): the RL loop's "enough new data"
 * trigger. Counts feedback rows, which is what an export of that format would add lines for (a ranking counts once,
 * though it adds a line per pair).
 */
export async function countApprovedSince(db: Kysely<StoreTables>, format: ExportFormat, since: Date | null): Promise<number> {
  if (EXPORT_KINDS[format].length === 0) return 0;
  let q = db
    .selectFrom('feedback')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('review_status', '=', 'approved')
    .where('kind', 'in', [...EXPORT_KINDS[format]]);
  if (since) q = q.where('reviewed_at', '>', since);
  const row = await q.executeTakeFirstOrThrow();
  return Number(row.n);
}
