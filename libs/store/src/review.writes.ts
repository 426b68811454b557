/**
 * A reviewer's decision as one transaction: the reviewer's vote (review_votes) is recorded, the feedback's status
 * (and, for an edit, its text) follows from the votes, the `reviews` audit row is written, and the completion's
 * derived review status follows, all or nothing. With an overlap of n (FLYWHEEL_REVIEW_OVERLAP) a feedback stays
 * pending until n reviewers decided it, then the majority of the latest n decides; overlap 1 is one reviewer per
 * item. The actor is the admin key id. No HTTP here: the admin API parses the action and shapes the answer.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import { newTimeOrderedId, rankingProblem, type AdminReviewAction, type ReviewStatus } from '@flywheel/contracts';
import { SEARCH_TEXT_MAX_CHARS, type FeedbackRow, type ReviewDecision, type ReviewRow, type StoreTables } from './store.tables';

export type ReviewFailureCode = 'not_found' | 'wrong_kind' | 'invalid_choice';

export type ReviewOutcome =
  | { ok: true; feedback: FeedbackRow; review: ReviewRow }
  | { ok: false; code: ReviewFailureCode; message: string };

/** How many reviewers decide one feedback. An odd overlap never ties (the config only allows odd ones). */
export interface ReviewPolicy {
  overlap: number;
}
export const SINGLE_REVIEWER: ReviewPolicy = { overlap: 1 };

const json = (value: unknown): string => JSON.stringify(value);
const fail = (code: ReviewFailureCode, message: string): ReviewOutcome => ({ ok: false, code, message });

/**
 * A feedback's status from its reviewers' current decisions, latest first (one per reviewer): pending until
 * `overlap` are in, then the majority of the latest `overlap` (a tie, possible only with an even overlap, stays
 * pending). With overlap 1 the latest decision decides, as a lone reviewer's always did.
 */
export function statusOfVotes(latestFirst: readonly ReviewDecision[], overlap: number): ReviewStatus {
  if (latestFirst.length < overlap) return 'pending';
  const window = latestFirst.slice(0, overlap);
  const approvals = window.filter((d) => d === 'approve').length;
  const rejections = window.length - approvals;
  if (approvals === rejections) return 'pending';
  return approvals > rejections ? 'approved' : 'rejected';
}

/**
 * A completion's status from its feedback: approved when any feedback is approved, else pending while
 * any waits, else rejected when some was rejected, else pending (no feedback).
 */
export function derivedCompletionStatus(statuses: readonly ReviewStatus[]): ReviewStatus {
  if (statuses.includes('approved')) return 'approved';
  if (statuses.includes('pending')) return 'pending';
  return statuses.includes('rejected') ? 'rejected' : 'pending';
}

export async function applyReview(
  db: Kysely<StoreTables>,
  actor: string,
  action: AdminReviewAction,
  policy: ReviewPolicy = SINGLE_REVIEWER,
  now: Date = new Date(),
): Promise<ReviewOutcome> {
  return db.transaction().execute(async (tx) => {
    const outcome =
      action.action === 'choose'
        ? await choose(tx, actor, action, policy, now)
        : action.action === 'rank'
          ? await rank(tx, actor, action, policy, now)
          : await decide(tx, actor, action, policy, now);
    if (outcome.ok) await refreshCompletionStatus(tx, outcome.feedback.completion_id);
    return outcome;
  });
}

/**
 * approve / reject: the actor's vote replaces their earlier one. edit: the new text withdraws every vote (they
 * judged other text), then counts as the editor's approval. reset: every vote is withdrawn, the item starts over.
 */
async function decide(
  tx: Transaction<StoreTables>,
  actor: string,
  action: Exclude<AdminReviewAction, { action: 'choose' | 'rank' }>,
  policy: ReviewPolicy,
  now: Date,
): Promise<ReviewOutcome> {
  // The row lock also serialises reviewers voting on the same feedback, so each counts the other's vote.
  const current = await tx.selectFrom('feedback').selectAll().where('id', '=', action.feedback_id).forUpdate().executeTakeFirst();
  if (!current) return fail('not_found', `No feedback with id '${action.feedback_id}'.`);
  if (action.action === 'edit' && current.kind !== 'correction') {
    return fail('wrong_kind', `Only a correction's text can be edited; feedback '${current.id}' is a ${current.kind}.`);
  }
  if (action.action === 'reset' || action.action === 'edit') {
    await tx.deleteFrom('review_votes').where('feedback_id', '=', current.id).execute();
  }
  let to: ReviewStatus = 'pending';
  if (action.action !== 'reset') {
    await recordVote(tx, current.id, actor, action.action === 'reject' ? 'reject' : 'approve', now);
    to = statusOfVotes(await votesLatestFirst(tx, current.id), policy.overlap);
  }
  const value = action.action === 'edit' ? action.text : current.value;
  const decided = to !== 'pending';
  const feedback = await tx
    .updateTable('feedback')
    .set({
      review_status: to,
      reviewed_at: decided ? now : null,
      reviewed_by: decided ? actor : null,
      ...(action.action === 'edit' ? { value: json(action.text), search_text: searchTextOf(current.comment, action.text) } : {}),
    })
    .where('id', '=', current.id)
    .returningAll()
    .executeTakeFirstOrThrow();
  const review = await insertReview(tx, {
    targetId: current.id,
    actor,
    action: action.action,
    from: current.review_status,
    to,
    note: action.note ?? null,
    before: { review_status: current.review_status, value: current.value },
    after: { review_status: to, value },
    now,
  });
  return { ok: true, feedback, review };
}

async function recordVote(tx: Transaction<StoreTables>, feedbackId: string, actor: string, decision: ReviewDecision, now: Date): Promise<void> {
  // Delete and insert rather than update: the new decision takes a new seq, so it counts as the latest.
  await tx.deleteFrom('review_votes').where('feedback_id', '=', feedbackId).where('actor', '=', actor).execute();
  await tx.insertInto('review_votes').values({ feedback_id: feedbackId, actor, decision, created_at: now }).execute();
}

async function votesLatestFirst(tx: Transaction<StoreTables>, feedbackId: string): Promise<ReviewDecision[]> {
  const rows = await tx.selectFrom('review_votes').select('decision').where('feedback_id', '=', feedbackId).orderBy('seq', 'desc').execute();
  return rows.map((r) => r.decision);
}

/** The reviewer's pick becomes a preference feedback carrying their approval; other reviewers decide it as any other. */
async function choose(
  tx: Transaction<StoreTables>,
  actor: string,
  action: Extract<AdminReviewAction, { action: 'choose' }>,
  policy: ReviewPolicy,
  now: Date,
): Promise<ReviewOutcome> {
  const completion = await choicesOf(tx, action.completion_id);
  if (!completion) return fail('not_found', `No completion with id '${action.completion_id}'.`);
  const count = completion.choiceCount;
  if (action.chosen >= count || action.rejected >= count) {
    return fail('invalid_choice', `Completion '${completion.id}' has ${count} choice(s); chosen and rejected must be between 0 and ${count - 1}.`);
  }
  return createReviewerFeedback(tx, actor, 'choose', completion, 'preference', { chosen: action.chosen, rejected: action.rejected }, action.note ?? null, policy, now);
}

/** The reviewer's order of every choice becomes a ranking feedback carrying their approval, as a pick does. */
async function rank(
  tx: Transaction<StoreTables>,
  actor: string,
  action: Extract<AdminReviewAction, { action: 'rank' }>,
  policy: ReviewPolicy,
  now: Date,
): Promise<ReviewOutcome> {
  const completion = await choicesOf(tx, action.completion_id);
  if (!completion) return fail('not_found', `No completion with id '${action.completion_id}'.`);
  const problem = rankingProblem(action.order, completion.choiceCount, completion.promptCount);
  if (problem) return fail('invalid_choice', `Completion '${completion.id}' cannot take this ranking: ${problem}.`);
  return createReviewerFeedback(tx, actor, 'rank', completion, 'ranking', [...action.order], action.note ?? null, policy, now);
}

interface CompletionChoices {
  id: string;
  policy_version: string;
  choiceCount: number;
  /** Distinct prompts the choices answer (more than one only for a completions request of several prompts). */
  promptCount: number;
}

async function choicesOf(tx: Transaction<StoreTables>, completionId: string): Promise<CompletionChoices | null> {
  const row = await tx
    .selectFrom('completions')
    .select([
      'id',
      'policy_version',
      sql<number>`jsonb_array_length(choices)`.as('choice_count'),
      sql<number>`(select count(distinct c->'promptIndex') from jsonb_array_elements(choices) c)`.as('prompt_count'),
    ])
    .where('id', '=', completionId)
    .executeTakeFirst();
  if (!row) return null;
  return { id: row.id, policy_version: row.policy_version, choiceCount: Number(row.choice_count), promptCount: Number(row.prompt_count) };
}

async function createReviewerFeedback(
  tx: Transaction<StoreTables>,
  actor: string,
  action: 'choose' | 'rank',
  completion: CompletionChoices,
  kind: 'preference' | 'ranking',
  value: unknown,
  note: string | null,
  policy: ReviewPolicy,
  now: Date,
): Promise<ReviewOutcome> {
  const to = statusOfVotes(['approve'], policy.overlap);
  const decided = to !== 'pending';
  const feedback = await tx
    .insertInto('feedback')
    .values({
      id: `fb-${newTimeOrderedId(now.getTime())}`,
      completion_id: completion.id,
      choice_index: null,
      kind,
      value: json(value),
      comment: note,
      author: actor,
      source: 'reviewer',
      key_id: actor,
      idempotency_key: null,
      policy_version: completion.policy_version,
      created_at: now,
      review_status: to,
      reviewed_at: decided ? now : null,
      reviewed_by: decided ? actor : null,
      search_text: searchTextOf(note, null),
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  await recordVote(tx, feedback.id, actor, 'approve', now);
  const review = await insertReview(tx, {
    targetId: feedback.id,
    actor,
    action,
    from: 'pending',
    to,
    note,
    before: null,
    after: { review_status: to, value },
    now,
  });
  return { ok: true, feedback, review };
}

async function insertReview(
  tx: Transaction<StoreTables>,
  r: { targetId: string; actor: string; action: ReviewRow['action']; from: ReviewStatus; to: ReviewStatus; note: string | null; before: unknown; after: unknown; now: Date },
): Promise<ReviewRow> {
  return tx
    .insertInto('reviews')
    .values({
      id: `rv-${newTimeOrderedId(r.now.getTime())}`,
      target_type: 'feedback',
      target_id: r.targetId,
      actor: r.actor,
      action: r.action,
      from_status: r.from,
      to_status: r.to,
      note: r.note,
      before: r.before === null ? null : json(r.before),
      after: r.after === null ? null : json(r.after),
      created_at: r.now,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

async function refreshCompletionStatus(tx: Transaction<StoreTables>, completionId: string): Promise<void> {
  // The store writer's per-completion lock: two reviews of one completion's feedback derive in turn.
  await sql`select pg_advisory_xact_lock(hashtext(${completionId}))`.execute(tx);
  const rows = await tx.selectFrom('feedback').select('review_status').where('completion_id', '=', completionId).execute();
  await tx
    .updateTable('completions')
    .set({ review_status: derivedCompletionStatus(rows.map((r) => r.review_status)) })
    .where('id', '=', completionId)
    .execute();
}

function searchTextOf(comment: string | null, text: string | null): string {
  return [comment, text].filter((p): p is string => typeof p === 'string' && p !== '').join('\n').slice(0, SEARCH_TEXT_MAX_CHARS);
}

/** The audit trail of one completion and of its feedback, oldest first. */
export async function listReviewsOfCompletion(db: Kysely<StoreTables>, completionId: string): Promise<ReviewRow[]> {
  return db
    .selectFrom('reviews')
    .selectAll()
    .where((eb) =>
      eb.or([
        eb.and([eb('target_type', '=', 'completion'), eb('target_id', '=', completionId)]),
        eb.and([eb('target_type', '=', 'feedback'), eb('target_id', 'in', eb.selectFrom('feedback').select('id').where('completion_id', '=', completionId))]),
      ]),
    )
    .orderBy('created_at')
    .orderBy('id')
    .execute();
}
