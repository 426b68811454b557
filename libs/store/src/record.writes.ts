/**
 * The store writer's transactions: a completion record or a feedback event in, one commit out, safe to
 * repeat (ids are the dedup keys; a redelivered message changes nothing). Feedback that arrives before
 * its completion waits in `feedback_orphans` and moves into `feedback` in the completion's transaction.
 * Both sides take the same per-completion advisory lock, so no orphan is stranded by a race.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import type { CompletionRecord, FeedbackEvent } from '@flywheel/contracts';
import { feedbackEventSchema } from '@flywheel/contracts';
import { SEARCH_TEXT_MAX_CHARS, type NewCompletionRow, type NewFeedbackRow, type StoreTables } from './store.tables';

export type WriteOutcome = 'inserted' | 'duplicate' | 'orphaned';

const json = (value: unknown): string => JSON.stringify(value);
const capped = (parts: Array<string | null | undefined>): string =>
  parts.filter((p): p is string => typeof p === 'string' && p !== '').join('\n').slice(0, SEARCH_TEXT_MAX_CHARS);

function isFlagged(record: CompletionRecord): boolean {
  const m = record.moderation;
  if (!m) return false;
  return [m.input, ...m.output].some((v) => v !== null && v.action !== 'allow');
}

export function completionRowOf(record: CompletionRecord): NewCompletionRow {
  const promptTexts = (record.prompts ?? []).map((p) => (typeof p === 'string' ? p : null));
  return {
    id: record.id,
    created_at: record.createdAt,
    endpoint: record.endpoint,
    outcome: record.status,
    error: record.error ? json(record.error) : null,
    model: record.model,
    policy_version: record.policyVersion,
    request: json(record.request),
    messages: record.messages ? json(record.messages) : null,
    prompts: record.prompts ? json(record.prompts) : null,
    choices: json(record.choices),
    prompt_tokens: record.usage.promptTokens,
    completion_tokens: record.usage.completionTokens,
    total_tokens: record.usage.totalTokens,
    ttft_ms: record.latencies.ttftMs,
    e2e_ms: record.latencies.e2eMs,
    policy_ttft_ms: record.latencies.policyTtftMs,
    policy_e2e_ms: record.latencies.policyE2eMs,
    stream: record.stream,
    end_user: record.user,
    key_id: record.keyId,
    request_id: record.requestId,
    gateway_instance_id: record.gatewayInstanceId,
    moderation: record.moderation ? json(record.moderation) : null,
    // Flagged when any check (the prompt's or a choice's output) did more than allow it.
    flagged: isFlagged(record),
    search_text: capped([...(record.messages ?? []).map((m) => m.content), ...promptTexts, ...record.choices.map((c) => c.text)]),
  };
}

export function feedbackRowOf(event: FeedbackEvent, policyVersion: string): NewFeedbackRow {
  const valueText = event.kind === 'correction' || event.kind === 'flag' ? String(event.value) : null;
  return {
    id: event.id,
    completion_id: event.completionId,
    choice_index: event.choiceIndex,
    kind: event.kind,
    value: json(event.value),
    comment: event.comment,
    author: event.author,
    source: event.source,
    key_id: event.keyId,
    idempotency_key: event.idempotencyKey,
    policy_version: policyVersion,
    created_at: event.createdAt,
    search_text: capped([event.comment, valueText]),
  };
}

const lockCompletion = (tx: Transaction<StoreTables>, completionId: string) =>
  sql`select pg_advisory_xact_lock(hashtext(${completionId}))`.execute(tx);

/** Inserts the completion once, then adopts any feedback that was waiting for it. */
export async function writeCompletion(db: Kysely<StoreTables>, record: CompletionRecord): Promise<WriteOutcome> {
  return db.transaction().execute(async (tx) => {
    await lockCompletion(tx, record.id);
    const inserted = await tx
      .insertInto('completions')
      .values(completionRowOf(record))
      .onConflict((oc) => oc.column('id').doNothing())
      .returning('id')
      .executeTakeFirst();
    const orphans = await tx.selectFrom('feedback_orphans').select(['id', 'event']).where('completion_id', '=', record.id).execute();
    for (const orphan of orphans) {
      await insertFeedback(tx, feedbackEventSchema.parse(orphan.event), record.policyVersion);
    }
    if (orphans.length > 0) await tx.deleteFrom('feedback_orphans').where('completion_id', '=', record.id).execute();
    return inserted ? 'inserted' : 'duplicate';
  });
}

/** Inserts the feedback once; parks it as an orphan while its completion is not in the store. */
export async function writeFeedback(db: Kysely<StoreTables>, event: FeedbackEvent): Promise<WriteOutcome> {
  return db.transaction().execute(async (tx) => {
    await lockCompletion(tx, event.completionId);
    const completion = await tx.selectFrom('completions').select('policy_version').where('id', '=', event.completionId).executeTakeFirst();
    if (!completion) {
      const parked = await tx
        .insertInto('feedback_orphans')
        .values({ id: event.id, completion_id: event.completionId, event: json(event) })
        .onConflict((oc) => oc.column('id').doNothing())
        .returning('id')
        .executeTakeFirst();
      return parked ? 'orphaned' : 'duplicate';
    }
    return (await insertFeedback(tx, event, completion.policy_version)) ? 'inserted' : 'duplicate';
  });
}

async function insertFeedback(tx: Transaction<StoreTables>, event: FeedbackEvent, policyVersion: string): Promise<boolean> {
  const inserted = await tx
    .insertInto('feedback')
    .values(feedbackRowOf(event, policyVersion))
    // No conflict target: the id and the (key, idempotency key) pair are both dedup keys.
    .onConflict((oc) => oc.doNothing())
    .returning('id')
    .executeTakeFirst();
  if (inserted && event.kind === 'flag') {
    await tx.updateTable('completions').set({ flagged: true }).where('id', '=', event.completionId).execute();
  }
  return inserted !== undefined;
}

/** A message the writer cannot parse, kept with its error instead of being dropped. */
export async function writeDeadLetter(
  db: Kysely<StoreTables>,
  letter: { stream: string; sequence: number; subject: string; payload: string; error: string },
): Promise<void> {
  await db
    .insertInto('dead_letters')
    .values({ id: `${letter.stream}:${letter.sequence}`, stream: letter.stream, subject: letter.subject, payload: letter.payload, error: letter.error })
    .onConflict((oc) => oc.column('id').doNothing())
    .execute();
}
