/**
 * Store rows → the admin API's wire shapes (@flywheel/contracts admin.schemas): snake_case, ISO times,
 * stored JSON re-checked with zod rather than cast. Pure functions.
 */
import { z } from 'zod';
import {
  completionRecordChoiceSchema,
  type AdminCompletionDetail,
  type AdminCompletionSummary,
  type AdminExport,
  type AdminExportFilters,
  type AdminFeedback,
  type AdminReview,
  type ModerationLabel,
} from '@flywheel/contracts';
import type { CompletionInboxRow, CompletionRow, ExportSummary, FeedbackRow, ModerationLabelRow, ReviewRow } from '@flywheel/store';

const iso = (d: Date): string => new Date(d).toISOString();

export function adminFeedbackOf(row: FeedbackRow): AdminFeedback {
  return {
    id: row.id,
    completion_id: row.completion_id,
    choice_index: row.choice_index,
    kind: row.kind,
    value: row.value,
    comment: row.comment,
    author: row.author,
    source: row.source,
    key_id: row.key_id,
    policy_version: row.policy_version,
    created_at: iso(row.created_at),
    review_status: row.review_status,
    reviewed_at: row.reviewed_at ? iso(row.reviewed_at) : null,
    reviewed_by: row.reviewed_by,
  };
}

const reviewStatus = z.enum(['pending', 'approved', 'rejected']);

export function adminReviewOf(row: ReviewRow): AdminReview {
  return {
    id: row.id,
    target_type: row.target_type,
    target_id: row.target_id,
    actor: row.actor,
    action: row.action,
    from_status: reviewStatus.parse(row.from_status),
    to_status: reviewStatus.parse(row.to_status),
    note: row.note,
    before: row.before,
    after: row.after,
    created_at: iso(row.created_at),
  };
}

export function adminCompletionSummaryOf(row: CompletionInboxRow): AdminCompletionSummary {
  return { ...row, created_at: iso(row.created_at) };
}

const storedChoices = z.array(completionRecordChoiceSchema);
const storedMessages = z.array(z.object({ role: z.string(), content: z.string() })).nullable();
const storedPrompts = z.array(z.union([z.string(), z.array(z.number())])).nullable();
const storedError = z.object({ code: z.string().nullable(), message: z.string() }).nullable();

export function moderationLabelOf(row: ModerationLabelRow): ModerationLabel {
  return {
    id: row.id,
    completion_id: row.completion_id,
    target: row.target,
    choice_index: row.choice_index,
    prompt_index: row.prompt_index,
    direction: row.direction,
    verdict: row.verdict,
    categories: row.categories,
    text: row.text,
    moderation_categories: row.moderation_categories,
    overturns: row.overturns,
    actor: row.actor,
    note: row.note,
    created_at: iso(row.created_at),
  };
}

export function adminCompletionDetailOf(row: CompletionRow, feedback: FeedbackRow[], reviews: ReviewRow[], labels: ModerationLabelRow[] = []): AdminCompletionDetail {
  return {
    id: row.id,
    created_at: iso(row.created_at),
    endpoint: row.endpoint,
    model: row.model,
    policy_version: row.policy_version,
    outcome: row.outcome,
    error: storedError.parse(row.error),
    messages: storedMessages.parse(row.messages),
    prompts: storedPrompts.parse(row.prompts),
    choices: storedChoices.parse(row.choices).map((c) => ({
      index: c.index,
      prompt_index: c.promptIndex,
      text: c.text,
      finish_reason: c.finishReason,
      token_count: c.tokenIds.length,
    })),
    usage: { prompt_tokens: row.prompt_tokens, completion_tokens: row.completion_tokens, total_tokens: row.total_tokens },
    latencies: { ttft_ms: row.ttft_ms, e2e_ms: row.e2e_ms },
    moderation: row.moderation,
    flagged: row.flagged,
    reward_score: row.reward_score,
    review_status: row.review_status,
    key_id: row.key_id,
    end_user: row.end_user,
    feedback: feedback.map(adminFeedbackOf),
    reviews: reviews.map(adminReviewOf),
    moderation_labels: labels.map(moderationLabelOf),
  };
}

export const exportDownloadUrl = (id: string): string => `/admin/api/exports/${encodeURIComponent(id)}/download`;

const storedExportFilters = z.object({ policy_version: z.string().optional(), from: z.string().optional(), to: z.string().optional() });

export function adminExportOf(row: ExportSummary): AdminExport {
  const filters: AdminExportFilters = storedExportFilters.parse(row.filters);
  return {
    id: row.id,
    format: row.format,
    filters,
    row_count: row.row_count,
    bytes: row.bytes,
    sha256: row.sha256,
    created_by: row.created_by,
    created_at: iso(row.created_at),
    download_url: exportDownloadUrl(row.id),
  };
}
