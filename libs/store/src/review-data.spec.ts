/**
 * Review data worth training on, on both backends (this machine's Postgres, the embedded Postgres): several
 * reviewers decide one feedback (overlap: pending until that many decided, then the majority of the latest; overlap
 * 1 as one reviewer always did), their agreement and the raters' (Krippendorff's α, checked against hand-computed
 * values), approved corrections as preference pairs, and the `prompts` export of live traffic with what moderation
 * and reviewers said about each prompt. Also: migration 0006 turns decisions already made into votes.
 */
import { Kysely, Migrator, PostgresDialect } from 'kysely';
import { Pool } from 'pg';
import { newTimeOrderedId, promptsExportLineSchema, type CompletionModeration, type CompletionRecord } from '@flywheel/contracts';
import { completionRecord, createThrowawayDatabase, onTestStore, feedbackEvent, type ThrowawayDatabase } from './store.testing';
import { migrateStore, type Store } from './store.open';
import type { StoreTables } from './store.tables';
import { writeCompletion, writeFeedback } from './record.writes';
import { applyReview, statusOfVotes, type ReviewPolicy } from './review.writes';
import { countApprovedSince, createExport, findExport } from './export.queries';
import { reviewAgreement } from './agreement.queries';
import { addModerationLabel } from './moderation-labels';
import { storeMigrationProvider } from './store.migrations';

jest.setTimeout(90_000);

const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const [A, B, C] = ['key_reviewer000a', 'key_reviewer000b', 'key_reviewer000c'];
const THREE: ReviewPolicy = { overlap: 3 };
const ONE: ReviewPolicy = { overlap: 1 };
const unique = (prefix: string) => `${prefix}-${newTimeOrderedId().slice(-10)}`;

describe('statusOfVotes', () => {
  it('waits for `overlap` decisions, then takes the majority of the latest that many', () => {
    expect(statusOfVotes([], 1)).toBe('pending');
    expect(statusOfVotes(['reject', 'approve'], 1)).toBe('rejected');
    expect(statusOfVotes(['approve', 'reject'], 3)).toBe('pending');
    expect(statusOfVotes(['reject', 'approve', 'approve'], 3)).toBe('approved');
    // The oldest of four falls out of the window.
    expect(statusOfVotes(['reject', 'reject', 'approve', 'approve'], 3)).toBe('rejected');
    // Only an even overlap can tie; a tie decides nothing.
    expect(statusOfVotes(['reject', 'approve'], 2)).toBe('pending');
  });
});

describe.each([['postgres'], ['embedded Postgres']] as const)('review data on %s', (kind) => {
  let store: Store;
  onTestStore(kind, ADMIN_URL, 'flywheel-review-data-', (s) => (store = s));

  async function completionWith(over: Partial<CompletionRecord> = {}): Promise<CompletionRecord> {
    const record = completionRecord(`chatcmpl-${newTimeOrderedId()}`, over);
    await writeCompletion(store.db, record);
    return record;
  }
  const votesOf = (feedbackId: string) =>
    store.db.selectFrom('review_votes').select(['actor', 'decision']).where('feedback_id', '=', feedbackId).orderBy('seq').execute();
  const statusOf = async (id: string) => (await store.db.selectFrom('feedback').select(['review_status', 'reviewed_by']).where('id', '=', id).executeTakeFirstOrThrow());

  it('with overlap 3, keeps a feedback pending until three reviewers decided, then the majority of the latest three decides', async () => {
    const record = await completionWith();
    const up = feedbackEvent(record.id, { kind: 'thumbs', value: 'up' });
    await writeFeedback(store.db, up);
    const decide = (actor: string, action: 'approve' | 'reject') => applyReview(store.db, actor, { action, feedback_id: up.id }, THREE);

    expect(await decide(A, 'approve')).toMatchObject({ ok: true, feedback: { review_status: 'pending', reviewed_by: null }, review: { action: 'approve', from_status: 'pending', to_status: 'pending' } });
    await decide(B, 'reject');
    // B changes their mind: still one decision each, two in all.
    expect(await decide(B, 'approve')).toMatchObject({ ok: true, feedback: { review_status: 'pending' } });
    expect(await votesOf(up.id)).toEqual([
      { actor: A, decision: 'approve' },
      { actor: B, decision: 'approve' },
    ]);
    expect(await decide(C, 'reject')).toMatchObject({ ok: true, feedback: { review_status: 'approved', reviewed_by: C }, review: { from_status: 'pending', to_status: 'approved' } });
    expect((await store.db.selectFrom('completions').select('review_status').where('id', '=', record.id).executeTakeFirstOrThrow()).review_status).toBe('approved');
    // A now rejects: the latest three are A reject, C reject, B approve.
    expect(await decide(A, 'reject')).toMatchObject({ ok: true, feedback: { review_status: 'rejected', reviewed_by: A }, review: { from_status: 'approved', to_status: 'rejected' } });
    expect(await votesOf(up.id)).toHaveLength(3);

    expect(await applyReview(store.db, B, { action: 'reset', feedback_id: up.id }, THREE)).toMatchObject({ ok: true, feedback: { review_status: 'pending', reviewed_by: null } });
    expect(await votesOf(up.id)).toEqual([]);
  });

  it('an edit withdraws the votes on the old text and is the editor approving; a pick carries the chooser approving', async () => {
    const record = await completionWith();
    const correction = feedbackEvent(record.id, { kind: 'correction', value: 'A dragon slep.' });
    await writeFeedback(store.db, correction);
    await applyReview(store.db, A, { action: 'reject', feedback_id: correction.id }, THREE);
    await applyReview(store.db, B, { action: 'reject', feedback_id: correction.id }, THREE);
    const edited = await applyReview(store.db, C, { action: 'edit', feedback_id: correction.id, text: 'A dragon slept.' }, THREE);
    expect(edited).toMatchObject({ ok: true, feedback: { value: 'A dragon slept.', review_status: 'pending' } });
    expect(await votesOf(correction.id)).toEqual([{ actor: C, decision: 'approve' }]);
    await applyReview(store.db, A, { action: 'approve', feedback_id: correction.id }, THREE);
    expect(await applyReview(store.db, B, { action: 'approve', feedback_id: correction.id }, THREE)).toMatchObject({ ok: true, feedback: { review_status: 'approved' } });

    const picked = await applyReview(store.db, A, { action: 'choose', completion_id: record.id, chosen: 1, rejected: 0 }, THREE);
    expect(picked).toMatchObject({ ok: true, feedback: { kind: 'preference', review_status: 'pending', reviewed_by: null }, review: { action: 'choose', to_status: 'pending' } });
    if (!picked.ok) throw new Error('choose failed');
    expect(await votesOf(picked.feedback.id)).toEqual([{ actor: A, decision: 'approve' }]);
    const soloPick = await applyReview(store.db, A, { action: 'choose', completion_id: record.id, chosen: 0, rejected: 1 }, ONE);
    expect(soloPick).toMatchObject({ ok: true, feedback: { review_status: 'approved', reviewed_by: A }, review: { to_status: 'approved' } });
  });

  it('with overlap 1 (the default), the latest decision decides, whoever makes it', async () => {
    const record = await completionWith();
    const down = feedbackEvent(record.id, { kind: 'thumbs', value: 'down' });
    await writeFeedback(store.db, down);
    await applyReview(store.db, A, { action: 'approve', feedback_id: down.id });
    expect(await statusOf(down.id)).toEqual({ review_status: 'approved', reviewed_by: A });
    await applyReview(store.db, B, { action: 'reject', feedback_id: down.id });
    expect(await statusOf(down.id)).toEqual({ review_status: 'rejected', reviewed_by: B });
    await applyReview(store.db, A, { action: 'approve', feedback_id: down.id });
    expect(await statusOf(down.id)).toEqual({ review_status: 'approved', reviewed_by: A });
    await applyReview(store.db, B, { action: 'reset', feedback_id: down.id });
    expect(await statusOf(down.id)).toEqual({ review_status: 'pending', reviewed_by: null });
  });

  it("measures reviewers' agreement (nominal α) and raters' (interval α) over items judged more than once, in range", async () => {
    const version = unique('agree');
    const now = Date.now();
    const range = { from: new Date(now - 3_600_000), to: new Date(now + 3_600_000), policyVersion: version };
    const x = await completionWith({ policyVersion: version });
    const y = await completionWith({ policyVersion: version });
    const z = await completionWith({ policyVersion: version });

    const thumbs = await Promise.all([0, 1, 2, 3].map(async () => {
      const f = feedbackEvent(x.id, { kind: 'thumbs', value: 'up' });
      await writeFeedback(store.db, f);
      return f.id;
    }));
    const votes: Array<[number, string, 'approve' | 'reject']> = [
      [0, A, 'approve'], [0, B, 'approve'], [0, C, 'approve'],
      [1, A, 'approve'], [1, B, 'reject'],
      [2, A, 'reject'], [2, B, 'reject'], [2, C, 'reject'],
      [3, A, 'approve'],
    ];
    for (const [i, actor, action] of votes) await applyReview(store.db, actor, { action, feedback_id: thumbs[i]! }, THREE);

    const rate = (completionId: string, choiceIndex: number, value: number, author: string | null, keyId = 'key_aaaaaaaaaaaa', createdAt = new Date(now).toISOString()) =>
      writeFeedback(store.db, feedbackEvent(completionId, { kind: 'rating', value, choiceIndex, author, keyId, createdAt }));
    await rate(x.id, 0, 5, 'u1', undefined, new Date(now - 60_000).toISOString());
    await rate(x.id, 0, 4, 'u2');
    await rate(x.id, 0, 3, 'u1'); // u1 again, later: replaces their 5
    await rate(x.id, 1, 2, 'u1');
    await rate(x.id, 1, 2, 'u2');
    await rate(x.id, 1, 1, 'u3', undefined, '2020-01-01T00:00:00.000Z'); // out of range
    await rate(y.id, 0, 4, 'u1'); // one rater only: not pairable
    await rate(z.id, 0, 5, null, 'key_bbbbbbbbbbbb'); // no author: the key is the rater
    await rate(z.id, 0, 1, null, 'key_cccccccccccc');

    const agreement = await reviewAgreement(store.db, range);
    // Decisions: units (a,a,a) (a,r) (r,r,r); the lone approval is not pairable. n = 8, four of each value:
    // D_e sum 8² − (16 + 16) = 32; D_o sum (4 − 2)/1 = 2 from the split unit. α = 1 − 7·2/32 = 9/16.
    expect(agreement.decisions).toEqual({ alpha: expect.closeTo(9 / 16, 12), units: 3, values: 8 });
    // Ratings: units (3,4) (2,2) (5,1). n = 6, Σv = 17, Σv² = 59: D_e sum 2(6·59 − 17²) = 130; D_o sum
    // 2(2·25 − 49) + 0 + 2(2·26 − 36) = 34. α = 1 − 5·34/130 = −4/13.
    expect(agreement.ratings).toEqual({ alpha: expect.closeTo(-4 / 13, 12), units: 3, values: 6 });

    const elsewhere = await reviewAgreement(store.db, { ...range, policyVersion: unique('none') });
    expect(elsewhere).toEqual({ decisions: { alpha: null, units: 0, values: 0 }, ratings: { alpha: null, units: 0, values: 0 } });
  });

  it('exports an approved correction as a preference pair over the choice it corrects, not an unchanged one', async () => {
    const version = unique('pairs');
    const record = await completionWith({ policyVersion: version });
    const changed = feedbackEvent(record.id, { kind: 'correction', value: 'The dragon was very kind.', choiceIndex: 1 });
    const same = feedbackEvent(record.id, { kind: 'correction', value: 'Once upon a time a dragon slept.', choiceIndex: 0 });
    const pending = feedbackEvent(record.id, { kind: 'correction', value: 'Never approved.', choiceIndex: 0 });
    for (const f of [changed, same, pending]) await writeFeedback(store.db, f);
    const countBefore = await countApprovedSince(store.db, 'preference', null);
    await applyReview(store.db, A, { action: 'approve', feedback_id: changed.id });
    await applyReview(store.db, A, { action: 'approve', feedback_id: same.id });

    const exp = await createExport(store.db, { format: 'preference', filters: { policyVersion: version }, filtersRecord: {}, createdBy: A });
    expect((await findExport(store.db, exp.id))?.content).toBe(
      '{"prompt":[{"role":"user","content":"Tell me about a dragon"}],"chosen":[{"role":"assistant","content":"The dragon was very kind."}],"rejected":[{"role":"assistant","content":"The dragon was kind."}]}\n',
    );
    // The loop's "enough new pairs" count sees approved corrections too (one of the two makes no line).
    expect((await countApprovedSince(store.db, 'preference', null)) - countBefore).toBe(2);
    expect(await countApprovedSince(store.db, 'prompts', null)).toBe(0);
  });

  it('exports each distinct prompt of live traffic once, leaving out what moderation or a reviewer kept out', async () => {
    const version = unique('prompts');
    const t0 = Date.now() - 600_000;
    let n = 0;
    const at = () => new Date(t0 + 1_000 * n++).toISOString();
    const chat = (content: string, over: Partial<CompletionRecord> = {}) =>
      completionWith({ policyVersion: version, createdAt: at(), messages: [{ role: 'system', content: 'Be kind.' }, { role: 'user', content }], ...over });
    const input = (action: 'allow' | 'flag', pii = false): CompletionModeration => ({
      input: {
        action,
        blockedCategories: [],
        flaggedCategories: action === 'flag' ? ['harassment'] : [],
        scores: {},
        matches: [],
        pii: pii ? [{ type: 'email', start: 0, end: 5 }] : [],
        model: 'm',
        source: 'service',
      },
      output: [],
    });
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } }];

    await chat('Tell me about a dragon');
    await chat('Tell me about a dragon'); // the same prompt again
    await completionWith({
      policyVersion: version,
      createdAt: at(),
      endpoint: 'completions',
      request: { model: 'stories260K', prompt: ['Once', [1, 2, 3], 'Twice'] },
      messages: null,
      prompts: ['Once', [1, 2, 3], 'Twice'],
      choices: [0, 1, 2].map((i) => ({ index: i, promptIndex: i, text: ' upon', finishReason: 'length' as const, tokenIds: [4], logprobs: null })),
    });
    await chat('This one failed', { status: 'failed', error: { code: null, message: 'boom' } });
    await chat('You are an idiot', { moderation: input('flag') });
    const cleared = await chat('Kill the lights, please', { moderation: input('flag') });
    await addModerationLabel(store.db, A, { completion_id: cleared.id, target: 'prompt', verdict: 'harmful', categories: ['violence'] });
    await addModerationLabel(store.db, B, { completion_id: cleared.id, target: 'prompt', verdict: 'not_harmful', categories: [] });
    const labelled = await chat('How do I pick a lock?', { moderation: input('allow') });
    await addModerationLabel(store.db, A, { completion_id: labelled.id, target: 'prompt', verdict: 'harmful', categories: ['illicit'] });
    await chat('Mail me at a@b.c', { moderation: input('allow', true) });
    await completionWith({ policyVersion: version, createdAt: at(), messages: [{ role: 'system', content: 'Only a system turn.' }] });
    await chat('What is the weather?', { request: { model: 'stories260K', messages: [], tools } });
    await completionWith({ policyVersion: unique('other'), messages: [{ role: 'user', content: 'Another version' }] });

    const exp = await createExport(store.db, { format: 'prompts', filters: { policyVersion: version }, filtersRecord: { policy_version: version }, createdBy: A });
    const system = { role: 'system', content: 'Be kind.' };
    const user = (content: string) => ({ role: 'user', content });
    const expected = [
      { prompt: [system, user('Tell me about a dragon')] },
      { prompt: [user('Once')] },
      { prompt: [user('Twice')] },
      { prompt: [system, user('Kill the lights, please')] },
      { tools, prompt: [system, user('What is the weather?')] },
    ];
    const content = (await findExport(store.db, exp.id))?.content ?? '';
    expect(content).toBe(expected.map((l) => `${JSON.stringify(l)}\n`).join(''));
    expect(exp).toMatchObject({ format: 'prompts', row_count: 5 });
    for (const l of content.trim().split('\n')) promptsExportLineSchema.parse(JSON.parse(l));

    const later = await createExport(store.db, { format: 'prompts', filters: { policyVersion: version, from: new Date(t0 + 2_500) }, filtersRecord: {}, createdBy: A });
    expect(later.row_count).toBe(2);
  });
});

describe('migration 0006 on a store that already has decisions', () => {
  let throwaway: ThrowawayDatabase;
  let db: Kysely<StoreTables> | null = null;

  afterAll(async () => {
    await db?.destroy();
    await throwaway?.drop();
  });

  it("turns each decided feedback's decision into its reviewer's vote", async () => {
    throwaway = await createThrowawayDatabase(ADMIN_URL);
    db = new Kysely<StoreTables>({ dialect: new PostgresDialect({ pool: new Pool({ connectionString: throwaway.url, max: 2 }) }) });
    expect((await new Migrator({ db, provider: storeMigrationProvider }).migrateTo('0005_grpo_runs')).error).toBeUndefined();
    const record = completionRecord(`chatcmpl-${newTimeOrderedId()}`);
    await writeCompletion(db, record);
    const [approved, rejected, waiting] = [feedbackEvent(record.id), feedbackEvent(record.id, { value: 'down' }), feedbackEvent(record.id)];
    for (const f of [approved, rejected, waiting]) await writeFeedback(db, f);
    // Distinct decision times: the migration orders votes by reviewed_at, then by id, and two decisions made in the
    // same millisecond would fall back to the ids' random digits.
    const t0 = Date.now();
    const decided = (id: string, status: 'approved' | 'rejected', by: string, at: number) =>
      db!.updateTable('feedback').set({ review_status: status, reviewed_by: by, reviewed_at: new Date(at) }).where('id', '=', id).execute();
    await decided(approved.id, 'approved', A, t0);
    await decided(rejected.id, 'rejected', B, t0 + 1_000);

    expect((await migrateStore(db)).error).toBeUndefined();
    const votes = await db.selectFrom('review_votes').select(['feedback_id', 'actor', 'decision']).orderBy('seq').execute();
    expect(votes).toEqual([
      { feedback_id: approved.id, actor: A, decision: 'approve' },
      { feedback_id: rejected.id, actor: B, decision: 'reject' },
    ]);
    // The next reviewer's decision counts beside the migrated one.
    await applyReview(db, C, { action: 'reject', feedback_id: approved.id }, THREE);
    expect(await db.selectFrom('review_votes').select('actor').where('feedback_id', '=', approved.id).orderBy('seq').execute()).toEqual([{ actor: A }, { actor: C }]);
  });
});
