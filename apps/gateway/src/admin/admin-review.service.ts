/**
 * Review decisions: a list of actions (one or many), each applied in its own transaction with its audit
 * row (libs/store review.writes.ts), so one bad id fails alone and the rest apply. The actor is the
 * session's admin key id; how many reviewers decide an item is FLYWHEEL_REVIEW_OVERLAP.
 */
import { adminReviewsBodySchema, type AdminReviewsResponse } from '@flywheel/contracts';
import { applyReview, type ReviewPolicy } from '@flywheel/store';
import { fromZodError } from '../http/openai-error';
import type { StoreHandle } from '../store/store.handle';
import { adminFeedbackOf, adminReviewOf } from './admin.mapping';

export class AdminReviewService {
  constructor(
    private readonly store: StoreHandle,
    private readonly policy: ReviewPolicy,
  ) {}

  async apply(body: unknown, actor: string): Promise<AdminReviewsResponse> {
    const parsed = adminReviewsBodySchema.safeParse(body);
    if (!parsed.success) throw fromZodError(parsed.error, body);
    const db = this.store.get().db;
    const results: AdminReviewsResponse['results'] = [];
    for (const [index, action] of parsed.data.actions.entries()) {
      const outcome = await applyReview(db, actor, action, this.policy);
      results.push(
        outcome.ok
          ? { ok: true, index, feedback: adminFeedbackOf(outcome.feedback), review: adminReviewOf(outcome.review) }
          : { ok: false, index, error: { code: outcome.code, message: outcome.message } },
      );
    }
    const applied = results.filter((r) => r.ok).length;
    return { results, applied, failed: results.length - applied };
  }
}
