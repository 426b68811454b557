/**
 * The admin API's store functions on both backends (this machine's Postgres, the embedded Postgres): a review
 * changes the status, writes its audit row and derives the completion's status in one transaction; a
 * failed one changes nothing; exports read approved rows only; stats group by UTC bucket.
 */
import { createHash } from 'node:crypto';
import { newTimeOrderedId } from '@flywheel/contracts';
import { completionRecord, onTestStore, feedbackEvent } from './store.testing';
import type { Store } from './store.open';
import { writeCompletion, writeFeedback } from './record.writes';
import { applyReview, derivedCompletionStatus, listReviewsOfCompletion } from './review.writes';
import { createExport, findExport, listExports } from './export.queries';
import { feedbackStatsCounts } from './stats.queries';
import { listCompletionInbox } from './inbox.queries';

jest.setTimeout(60_000);

const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const ACTOR = 'key_admin0000001';

it('derives a completion status from its feedback', () => {
  expect(derivedCompletionStatus([])).toBe('pending');
  expect(derivedCompletionStatus(['rejected', 'pending'])).toBe('pending');
  expect(derivedCompletionStatus(['rejected', 'rejected'])).toBe('rejected');
  expect(derivedCompletionStatus(['rejected', 'approved', 'pending'])).toBe('approved');
});

describe.each([['postgres'], ['embedded Postgres']] as const)('admin queries on %s', (kind) => {
  let store: Store;
  onTestStore(kind, ADMIN_URL, 'flywheel-admin-store-', (s) => (store = s));

  it('reviews, edits and chooses with an audit row each, and derives the completion status', async () => {
    const record = completionRecord(`chatcmpl-${newTimeOrderedId()}`, { policyVersion: 'rv' });
    await writeCompletion(store.db, record);
    const thumbs = feedbackEvent(record.id, { kind: 'thumbs', value: 'down' });
    const correction = feedbackEvent(record.id, { kind: 'correction', value: 'A dragon slept soundly.', comment: 'tense' });
    await writeFeedback(store.db, thumbs);
    await writeFeedback(store.db, correction);

    const rejected = await applyReview(store.db, ACTOR, { action: 'reject', feedback_id: thumbs.id, note: 'noise' });
    expect(rejected).toMatchObject({ ok: true, feedback: { review_status: 'rejected', reviewed_by: ACTOR }, review: { from_status: 'pending', to_status: 'rejected', note: 'noise' } });
    let completion = await store.db.selectFrom('completions').select('review_status').where('id', '=', record.id).executeTakeFirstOrThrow();
    expect(completion.review_status).toBe('pending');

    const edited = await applyReview(store.db, ACTOR, { action: 'edit', feedback_id: correction.id, text: 'A dragon slept.' });
    expect(edited).toMatchObject({ ok: true, feedback: { value: 'A dragon slept.', review_status: 'approved', search_text: 'tense\nA dragon slept.' } });
    completion = await store.db.selectFrom('completions').select('review_status').where('id', '=', record.id).executeTakeFirstOrThrow();
    expect(completion.review_status).toBe('approved');

    expect(await applyReview(store.db, ACTOR, { action: 'edit', feedback_id: thumbs.id, text: 'x' })).toMatchObject({ ok: false, code: 'wrong_kind' });
    expect(await applyReview(store.db, ACTOR, { action: 'approve', feedback_id: 'fb-none' })).toMatchObject({ ok: false, code: 'not_found' });
    expect(await applyReview(store.db, ACTOR, { action: 'choose', completion_id: record.id, chosen: 0, rejected: 2 })).toMatchObject({ ok: false, code: 'invalid_choice' });
    const chosen = await applyReview(store.db, ACTOR, { action: 'choose', completion_id: record.id, chosen: 1, rejected: 0, note: 'kinder' });
    expect(chosen).toMatchObject({ ok: true, feedback: { kind: 'preference', source: 'reviewer', value: { chosen: 1, rejected: 0 }, policy_version: 'rv', comment: 'kinder' } });
    const reset = await applyReview(store.db, ACTOR, { action: 'reset', feedback_id: thumbs.id });
    expect(reset).toMatchObject({ ok: true, feedback: { review_status: 'pending', reviewed_by: null, reviewed_at: null }, review: { from_status: 'rejected', to_status: 'pending' } });

    const trail = await listReviewsOfCompletion(store.db, record.id);
    expect(trail.map((r) => [r.action, r.from_status, r.to_status, r.actor])).toEqual([
      ['reject', 'pending', 'rejected', ACTOR],
      ['edit', 'pending', 'approved', ACTOR],
      ['choose', 'pending', 'approved', ACTOR],
      ['reset', 'rejected', 'pending', ACTOR],
    ]);
    expect((await listCompletionInbox(store.db, { policyVersion: 'rv', status: 'approved' }, null, 10)).rows).toEqual([
      expect.objectContaining({ id: record.id, feedback_count: 3, choice_count: 2 }),
    ]);
  });

  it('exports approved rows only, records the file with its sha256, and counts feedback per UTC bucket', async () => {
    const record = completionRecord(`chatcmpl-${newTimeOrderedId()}`, { policyVersion: 'ex' });
    await writeCompletion(store.db, record);
    const up = feedbackEvent(record.id, { kind: 'thumbs', value: 'up', createdAt: '2026-02-01T10:15:00.000Z' });
    const pending = feedbackEvent(record.id, { kind: 'thumbs', value: 'up', choiceIndex: 1, createdAt: '2026-02-01T10:45:00.000Z' });
    const rating = feedbackEvent(record.id, { kind: 'rating', value: 2, choiceIndex: 1, createdAt: '2026-02-01T12:00:00.000Z' });
    for (const f of [up, pending, rating]) await writeFeedback(store.db, f);
    await applyReview(store.db, ACTOR, { action: 'approve', feedback_id: up.id });
    await applyReview(store.db, ACTOR, { action: 'approve', feedback_id: rating.id });

    const created = await createExport(store.db, { format: 'kto', filters: { policyVersion: 'ex' }, filtersRecord: { policy_version: 'ex' }, createdBy: ACTOR });
    const content =
      '{"prompt":[{"role":"user","content":"Tell me about a dragon"}],"completion":[{"role":"assistant","content":"Once upon a time a dragon slept."}],"label":true}\n' +
      '{"prompt":[{"role":"user","content":"Tell me about a dragon"}],"completion":[{"role":"assistant","content":"The dragon was kind."}],"label":false}\n';
    expect(created).toMatchObject({ format: 'kto', row_count: 2, bytes: Buffer.byteLength(content), created_by: ACTOR, filters: { policy_version: 'ex' } });
    expect(created.sha256).toBe(createHash('sha256').update(content).digest('hex'));
    expect((await findExport(store.db, created.id))?.content).toBe(content);
    const empty = await createExport(store.db, { format: 'preference', filters: { policyVersion: 'ex' }, filtersRecord: {}, createdBy: ACTOR });
    expect(empty).toMatchObject({ row_count: 0, bytes: 0, sha256: createHash('sha256').update('').digest('hex') });
    expect((await listExports(store.db, 10)).map((e) => e.id).slice(0, 2)).toEqual([empty.id, created.id]);
    const narrowed = await createExport(store.db, { format: 'sft', filters: { policyVersion: 'ex', from: new Date('2026-02-01T11:00:00Z') }, filtersRecord: {}, createdBy: ACTOR });
    expect(narrowed.row_count).toBe(0);

    const counts = await feedbackStatsCounts(store.db, { bucket: 'hour', from: new Date('2026-02-01T00:00:00Z'), to: new Date('2026-02-02T00:00:00Z'), policyVersion: 'ex' });
    expect(counts.volume).toEqual([
      { t: new Date('2026-02-01T10:00:00Z'), kind: 'thumbs', count: 2 },
      { t: new Date('2026-02-01T12:00:00Z'), kind: 'rating', count: 1 },
    ]);
    expect(counts.groups.sort((a, b) => a.kind.localeCompare(b.kind) || a.status.localeCompare(b.status))).toEqual([
      { policyVersion: 'ex', kind: 'rating', status: 'approved', value: '2', count: 1 },
      { policyVersion: 'ex', kind: 'thumbs', status: 'approved', value: 'up', count: 1 },
      { policyVersion: 'ex', kind: 'thumbs', status: 'pending', value: 'up', count: 1 },
    ]);
  });
});
