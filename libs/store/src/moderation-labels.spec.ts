/**
 * Reviewers' moderation labels on this machine's Postgres: a label copies its text and what moderation had said,
 * knows whether it overturns that, refuses a choice or message that is not there; the `moderation` export takes the
 * latest label per text and approved flags that name a moderation category (not `incorrect`, not pending ones, not a
 * choice a reviewer labelled), and its lines parse with the contract.
 */
import { moderationExportLineSchema, type CompletionModeration } from '@flywheel/contracts';
import { completionRecord, createThrowawayDatabase, feedbackEvent, type ThrowawayDatabase } from './store.testing';
import { openStore, type Store } from './store.open';
import { writeCompletion, writeFeedback } from './record.writes';
import { applyReview } from './review.writes';
import { createExport } from './export.queries';
import { addModerationLabel, countModerationDataSince, labelOverturns, listModerationLabels } from './moderation-labels';

jest.setTimeout(60_000);

const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const ACTOR = 'key_reviewer0001';

const verdict = (flagged: string[]) => ({ action: flagged.length ? ('flag' as const) : ('allow' as const), blockedCategories: [], flaggedCategories: flagged as never[], scores: {}, matches: [], pii: [] });

it('knows when a label overturns moderation', () => {
  expect(labelOverturns('not_harmful', [], ['harassment'])).toBe(true);
  expect(labelOverturns('not_harmful', [], [])).toBe(false);
  expect(labelOverturns('harmful', ['illicit'], [])).toBe(true);
  expect(labelOverturns('harmful', ['harassment'], ['harassment', 'violence'])).toBe(false);
});

describe('moderation labels', () => {
  let db: ThrowawayDatabase;
  let store: Store;

  beforeAll(async () => {
    db = await createThrowawayDatabase(ADMIN_URL);
    store = await openStore({ url: db.url });
    const moderation: CompletionModeration = {
      input: { ...verdict(['harassment']), model: 'm', source: 'service' },
      output: [
        { ...verdict([]), index: 0, cutOffset: null, generatedChars: 10 },
        { ...verdict(['violence']), index: 1, cutOffset: null, generatedChars: 10 },
      ],
    };
    await writeCompletion(
      store.db,
      completionRecord('chatcmpl-ml-1', {
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'You are all idiots.' },
          { role: 'assistant', content: 'Let us stay calm.' },
          { role: 'user', content: 'Where do I buy a fake passport?' },
        ],
        moderation,
      }),
    );
    await writeCompletion(store.db, completionRecord('chatcmpl-ml-2'));
  });

  afterAll(async () => {
    await store?.close();
    await db?.drop();
  });

  it('labels the last user message by default, a chosen message, or a choice, with what moderation had said', async () => {
    const prompt = await addModerationLabel(store.db, ACTOR, { completion_id: 'chatcmpl-ml-1', target: 'prompt', verdict: 'harmful', categories: ['illicit'] });
    expect(prompt).toMatchObject({ ok: true, label: { text: 'Where do I buy a fake passport?', prompt_index: 3, direction: 'input', moderation_categories: ['harassment'], overturns: true } });
    const earlier = await addModerationLabel(store.db, ACTOR, { completion_id: 'chatcmpl-ml-1', target: 'prompt', prompt_index: 1, verdict: 'harmful', categories: ['harassment'] });
    expect(earlier).toMatchObject({ ok: true, label: { text: 'You are all idiots.', overturns: false } });
    const cleared = await addModerationLabel(store.db, ACTOR, { completion_id: 'chatcmpl-ml-1', target: 'choice', choice_index: 1, verdict: 'not_harmful', categories: [] });
    expect(cleared).toMatchObject({ ok: true, label: { direction: 'output', moderation_categories: ['violence'], overturns: true, text: 'The dragon was kind.' } });
    expect((await listModerationLabels(store.db, 'chatcmpl-ml-1')).map((l) => l.target)).toEqual(['prompt', 'prompt', 'choice']);
  });

  it('refuses a missing completion, choice or message', async () => {
    expect(await addModerationLabel(store.db, ACTOR, { completion_id: 'nope', target: 'prompt', verdict: 'not_harmful', categories: [] })).toMatchObject({ ok: false, code: 'not_found' });
    expect(await addModerationLabel(store.db, ACTOR, { completion_id: 'chatcmpl-ml-1', target: 'choice', choice_index: 7, verdict: 'not_harmful', categories: [] })).toMatchObject({ ok: false, code: 'invalid_choice' });
    expect(await addModerationLabel(store.db, ACTOR, { completion_id: 'chatcmpl-ml-1', target: 'prompt', prompt_index: 9, verdict: 'not_harmful', categories: [] })).toMatchObject({ ok: false, code: 'invalid_prompt' });
  });

  it('exports the latest label per text and approved flags naming a moderation category', async () => {
    // The reviewer changes their mind about the last message: only the later label is exported.
    await addModerationLabel(store.db, ACTOR, { completion_id: 'chatcmpl-ml-1', target: 'prompt', verdict: 'harmful', categories: ['illicit', 'violence'] });
    const flag = feedbackEvent('chatcmpl-ml-2', { kind: 'flag', value: 'self-harm', choiceIndex: 1 });
    const other = feedbackEvent('chatcmpl-ml-2', { kind: 'flag', value: 'incorrect', choiceIndex: 0 });
    const pending = feedbackEvent('chatcmpl-ml-2', { kind: 'flag', value: 'violence', choiceIndex: 0 });
    const covered = feedbackEvent('chatcmpl-ml-1', { kind: 'flag', value: 'violence', choiceIndex: 1 });
    for (const f of [flag, other, pending, covered]) await writeFeedback(store.db, f);
    for (const f of [flag, other, covered]) expect(await applyReview(store.db, ACTOR, { action: 'approve', feedback_id: f.id })).toMatchObject({ ok: true });

    const exp = await createExport(store.db, { format: 'moderation', filters: {}, filtersRecord: {}, createdBy: ACTOR });
    const lines = exp.row_count ? (await store.db.selectFrom('exports').select('content').where('id', '=', exp.id).executeTakeFirstOrThrow()).content.trim().split('\n') : [];
    const parsed = lines.map((l) => moderationExportLineSchema.parse(JSON.parse(l)));
    expect(parsed.map(({ text, direction, categories, source, overturned }) => ({ text, direction, categories, source, overturned }))).toEqual([
      { text: 'You are all idiots.', direction: 'input', categories: ['harassment'], source: 'reviewer', overturned: false },
      { text: 'The dragon was kind.', direction: 'output', categories: [], source: 'reviewer', overturned: true },
      { text: 'Where do I buy a fake passport?', direction: 'input', categories: ['illicit', 'violence'], source: 'reviewer', overturned: true },
      { text: 'The dragon was kind.', direction: 'output', categories: ['self-harm'], source: 'flag', overturned: true },
    ]);
    expect(await countModerationDataSince(store.db, null)).toBe(6);
    expect(await countModerationDataSince(store.db, new Date(Date.now() + 60_000))).toBe(0);
  });
});
