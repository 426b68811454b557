/**
 * The admin API's reads: the inbox (feedback or completions, filtered, keyset-paginated), one
 * completion with everything about it, the policy versions seen, and the dashboard's stats (with the
 * reviewers' agreement). Each parses
 * its query with the contract's schema, asks the store once or twice, and maps rows to wire shapes.
 */
import {
  adminInboxQuerySchema,
  adminStatsQuerySchema,
  type AdminCompletionDetail,
  type AdminInboxPage,
  type AdminPolicyVersions,
  type AdminStats,
} from '@flywheel/contracts';
import {
  completionPreviews,
  decodeInboxCursor,
  encodeInboxCursor,
  feedbackStatsCounts,
  listCompletionInbox,
  listFeedbackInbox,
  listPolicyVersions,
  listReviewsOfCompletion,
  listModerationLabels,
  reviewAgreement,
} from '@flywheel/store';
import { fromZodError, OpenAiError } from '../http/openai-error';
import type { StoreHandle } from '../store/store.handle';
import { adminCompletionDetailOf, adminCompletionSummaryOf, adminFeedbackOf } from './admin.mapping';
import { statsOf, statsRangeOf } from './admin-stats';

export class AdminReadService {
  constructor(
    private readonly store: StoreHandle,
    /** FLYWHEEL_REVIEW_OVERLAP, shown beside the reviewers' agreement. */
    private readonly reviewOverlap: number = 1,
    private readonly now: () => number = Date.now,
  ) {}

  async inbox(query: unknown): Promise<AdminInboxPage> {
    const parsed = adminInboxQuerySchema.safeParse(query);
    if (!parsed.success) throw fromZodError(parsed.error, query);
    const q = parsed.data;
    const cursor = q.cursor === undefined ? null : decodeInboxCursor(q.cursor);
    if (q.cursor !== undefined && cursor === null) throw OpenAiError.invalid("Invalid value for 'cursor': pass next_cursor of the previous page.", 'cursor', 'invalid_value');
    const common = {
      ...(q.status ? { status: q.status } : {}),
      ...(q.policy_version ? { policyVersion: q.policy_version } : {}),
      ...(q.flagged !== undefined ? { flagged: q.flagged } : {}),
      ...(q.from ? { from: new Date(q.from) } : {}),
      ...(q.to ? { to: new Date(q.to) } : {}),
      ...(q.q ? { text: q.q } : {}),
    };
    const db = this.store.get().db;
    if (q.view === 'completions') {
      if (q.kind) throw OpenAiError.invalid("'kind' filters feedback: use it with view=feedback.", 'kind', 'invalid_value');
      const page = await listCompletionInbox(db, common, cursor, q.limit);
      return { object: 'list', view: 'completions', data: page.rows.map(adminCompletionSummaryOf), next_cursor: page.next ? encodeInboxCursor(page.next) : null };
    }
    const page = await listFeedbackInbox(db, { ...common, ...(q.kind ? { kind: q.kind } : {}) }, cursor, q.limit);
    const previews = await completionPreviews(
      db,
      page.rows.map((r) => r.completion_id),
    );
    return {
      object: 'list',
      view: 'feedback',
      data: page.rows.map((r) => ({ ...adminFeedbackOf(r), completion_preview: previews.get(r.completion_id) ?? null })),
      next_cursor: page.next ? encodeInboxCursor(page.next) : null,
    };
  }

  async completion(id: string): Promise<AdminCompletionDetail> {
    const db = this.store.get().db;
    const row = await db.selectFrom('completions').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new OpenAiError(404, 'invalid_request_error', `No completion found with id '${id}'.`, 'id', 'completion_not_found');
    const feedback = await db.selectFrom('feedback').selectAll().where('completion_id', '=', id).orderBy('created_at').orderBy('id').execute();
    return adminCompletionDetailOf(row, feedback, await listReviewsOfCompletion(db, id), await listModerationLabels(db, id));
  }

  async policyVersions(): Promise<AdminPolicyVersions> {
    return { data: await listPolicyVersions(this.store.get().db) };
  }

  async stats(query: unknown): Promise<AdminStats> {
    const parsed = adminStatsQuerySchema.safeParse(query);
    if (!parsed.success) throw fromZodError(parsed.error, query);
    const q = parsed.data;
    const range = statsRangeOf(q.bucket, q.from, q.to, this.now());
    const db = this.store.get().db;
    const scope = { ...range, ...(q.policy_version ? { policyVersion: q.policy_version } : {}) };
    const counts = await feedbackStatsCounts(db, { bucket: q.bucket, ...scope });
    const agreement = await reviewAgreement(db, scope);
    return statsOf(q.bucket, range, counts.volume, counts.groups, { ...agreement, reviewOverlap: this.reviewOverlap });
  }
}
