/**
 * N-way rankings on both backends (this machine's Postgres, the embedded Postgres): migration 0010 takes the
 * `ranking` kind and the `rank` action; a reviewer's rank records an approved ranking with its audit row and refuses
 * (writing nothing) a ranking its completion cannot take; an API user's ranking waits for a reviewer; the preference
 * export turns an approved ranking of 3 into its 3 pairs byte for byte, the KTO export into its top and bottom.
 */
import { newTimeOrderedId, type CompletionRecord } from '@flywheel/contracts';
import { completionRecord, onTestStore, feedbackEvent } from './store.testing';
import type { Store } from './store.open';
import { writeCompletion, writeFeedback } from './record.writes';
import { applyReview, listReviewsOfCompletion } from './review.writes';
import { countApprovedSince, createExport, findExport } from './export.queries';

jest.setTimeout(90_000);

const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const REVIEWER = 'key_reviewer000r';
const PROMPT = 'Tell me about a dragon';
const TEXTS = ['Once upon a time a dragon slept.', 'The dragon was kind.', 'Dragons breathe fire.'];

const choice = (index: number, text: string, promptIndex = 0): CompletionRecord['choices'][number] => ({
  index,
  promptIndex,
  text,
  finishReason: 'stop',
  tokenIds: [index],
  logprobs: null,
});

describe.each([['postgres'], ['embedded Postgres']] as const)('rankings on %s', (kind) => {
  let store: Store;
  onTestStore(kind, ADMIN_URL, 'flywheel-rankings-', (s) => (store = s));

  it("records a reviewer's ranking approved with its audit row, and refuses one its completion cannot take", async () => {
    const policyVersion = `rank-${newTimeOrderedId().slice(-8)}`;
    const record = completionRecord(`chatcmpl-${newTimeOrderedId()}`, { policyVersion, choices: TEXTS.map((t, i) => choice(i, t)) });
    await writeCompletion(store.db, record);

    for (const order of [[2, 0], [2, 0, 3], [0, 1, 2, 3]]) {
      expect(await applyReview(store.db, REVIEWER, { action: 'rank', completion_id: record.id, order })).toMatchObject({ ok: false, code: 'invalid_choice' });
    }
    expect(await applyReview(store.db, REVIEWER, { action: 'rank', completion_id: record.id, order: [2, 0] })).toMatchObject({
      message: `Completion '${record.id}' cannot take this ranking: a ranking orders every choice of the completion (0 to 2, best first); missing 1.`,
    });
    expect(await applyReview(store.db, REVIEWER, { action: 'rank', completion_id: 'chatcmpl-none', order: [0, 1] })).toMatchObject({ ok: false, code: 'not_found' });
    // A completions request of two prompts: its choices answer different prompts.
    const twoPrompts = completionRecord(`cmpl-${newTimeOrderedId()}`, {
      endpoint: 'completions',
      messages: null,
      prompts: ['Once', 'Twice'],
      choices: [choice(0, ' upon', 0), choice(1, ' more', 1)],
    });
    await writeCompletion(store.db, twoPrompts);
    expect(await applyReview(store.db, REVIEWER, { action: 'rank', completion_id: twoPrompts.id, order: [1, 0] })).toMatchObject({ ok: false, code: 'invalid_choice' });
    expect(await store.db.selectFrom('feedback').select('id').where('completion_id', 'in', [record.id, twoPrompts.id]).execute()).toEqual([]);

    const ranked = await applyReview(store.db, REVIEWER, { action: 'rank', completion_id: record.id, order: [2, 0, 1], note: 'fire first' });
    expect(ranked).toMatchObject({
      ok: true,
      feedback: { kind: 'ranking', value: [2, 0, 1], choice_index: null, source: 'reviewer', author: REVIEWER, review_status: 'approved', policy_version: policyVersion, comment: 'fire first' },
      review: { action: 'rank', from_status: 'pending', to_status: 'approved', after: { review_status: 'approved', value: [2, 0, 1] } },
    });
    expect((await listReviewsOfCompletion(store.db, record.id)).map((r) => r.action)).toEqual(['rank']);
    const completion = await store.db.selectFrom('completions').select('review_status').where('id', '=', record.id).executeTakeFirstOrThrow();
    expect(completion.review_status).toBe('approved');
  });

  it('exports an approved ranking of 3 as its 3 preference pairs and its top and bottom for KTO; a pending one not at all', async () => {
    const policyVersion = `rank-export-${newTimeOrderedId().slice(-8)}`;
    const record = completionRecord(`chatcmpl-${newTimeOrderedId()}`, {
      policyVersion,
      messages: [{ role: 'user', content: PROMPT }],
      choices: TEXTS.map((t, i) => choice(i, t)),
    });
    await writeCompletion(store.db, record);
    // An API user's ranking (as the feedback API publishes it) waits for a reviewer.
    const posted = feedbackEvent(record.id, { kind: 'ranking', value: [1, 2, 0], choiceIndex: null });
    await writeFeedback(store.db, posted);
    const filters = { policyVersion };
    const exportOf = async (format: 'preference' | 'kto') => {
      const summary = await createExport(store.db, { format, filters, filtersRecord: { policy_version: policyVersion }, createdBy: REVIEWER });
      return { rows: summary.row_count, content: (await findExport(store.db, summary.id))?.content };
    };
    expect(await exportOf('preference')).toEqual({ rows: 0, content: '' });

    expect(await applyReview(store.db, REVIEWER, { action: 'approve', feedback_id: posted.id })).toMatchObject({ ok: true, feedback: { review_status: 'approved' } });
    const prompt = `"prompt":[{"role":"user","content":"${PROMPT}"}]`;
    const answer = (i: number) => `[{"role":"assistant","content":"${TEXTS[i]}"}]`;
    // #1 > #2 > #0: (1,2), (1,0), (2,0).
    expect(await exportOf('preference')).toEqual({
      rows: 3,
      content: [
        `{${prompt},"chosen":${answer(1)},"rejected":${answer(2)}}\n`,
        `{${prompt},"chosen":${answer(1)},"rejected":${answer(0)}}\n`,
        `{${prompt},"chosen":${answer(2)},"rejected":${answer(0)}}\n`,
      ].join(''),
    });
    expect(await exportOf('kto')).toEqual({
      rows: 2,
      content: `{${prompt},"completion":${answer(1)},"label":true}\n{${prompt},"completion":${answer(0)},"label":false}\n`,
    });
    // The loop's "enough new data" trigger counts the ranking once.
    expect(await countApprovedSince(store.db, 'preference', new Date(Date.now() - 60_000))).toBeGreaterThanOrEqual(1);
  });
});
