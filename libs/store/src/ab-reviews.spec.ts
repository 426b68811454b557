/**
 * The blind A/B queue on both backends (this machine's Postgres, the embedded Postgres): pairs queued with the order
 * drawn once and kept, re-queuing an eval run adds nothing, the pending list shows no versions and no sides, a verdict
 * is recorded once (unknown ids and second verdicts are told apart), and the per-candidate summary counts wins, losses
 * and ties by the hidden side, with the Wilson interval checked against hand-computed values and the decision rule.
 */
import { newTimeOrderedId } from '@flywheel/contracts';
import { onTestStore } from './store.testing';
import type { Store } from './store.open';
import { queueAbPairs, recordAbVerdict } from './ab-reviews.writes';
import type { AbPrompt } from './store.tables';
import { abSummaries, abSummaryOf, listPendingAb, wilsonInterval } from './ab-reviews.queries';

jest.setTimeout(90_000);

const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const unique = (prefix: string) => `${prefix}-${newTimeOrderedId().slice(-10)}`;
const prompt = (text: string): AbPrompt => [{ role: 'user', content: text }];

describe('wilsonInterval and the A/B decision', () => {
  it('matches hand-computed 95% Wilson intervals', () => {
    const even = wilsonInterval(0.5, 10);
    expect(even.low).toBeCloseTo(0.2366, 4);
    expect(even.high).toBeCloseTo(0.7634, 4);
    const four = wilsonInterval(4 / 20, 20);
    expect(four.low).toBeCloseTo(0.0807, 3);
    expect(four.high).toBeCloseTo(0.416, 3);
    expect(wilsonInterval(1, 5).high).toBe(1);
    expect(wilsonInterval(0, 0)).toEqual({ low: 0, high: 1 });
  });

  it('is pending below minVerdicts, refuses only when the interval lies wholly below one half', () => {
    const counts = { candidateVersion: 'c', activeVersion: 'a', items: 20, pending: 0, minVerdicts: 10 };
    expect(abSummaryOf({ ...counts, candidateWins: 0, activeWins: 9, ties: 0 }).decision).toBe('pending');
    const lost = abSummaryOf({ ...counts, candidateWins: 1, activeWins: 9, ties: 0 });
    expect(lost).toMatchObject({ verdicts: 10, winRate: 0.1, decided: true, decision: 'refuse' });
    // Even: not significantly worse, so it may be promoted.
    expect(abSummaryOf({ ...counts, candidateWins: 3, activeWins: 3, ties: 4 })).toMatchObject({ winRate: 0.5, decision: 'promote' });
    // 3 wins, 7 losses over 10: [0.108, 0.603] reaches 0.5, so not refused.
    expect(abSummaryOf({ ...counts, candidateWins: 3, activeWins: 7, ties: 0 }).decision).toBe('promote');
    expect(abSummaryOf({ ...counts, candidateWins: 0, activeWins: 0, ties: 0 })).toMatchObject({ winRate: null, interval: null, decision: 'pending' });
  });
});

describe.each([['postgres'], ['embedded Postgres']] as const)('A/B queue on %s', (kind) => {
  let store: Store;
  onTestStore(kind, ADMIN_URL, 'flywheel-ab-reviews-', (s) => (store = s));

  it('queues pairs in a drawn order it keeps, shows them blind, takes one verdict each and summarises by the hidden side', async () => {
    const evalRunId = unique('eval');
    const candidate = unique('policy-cand');
    const pairs = [0, 1, 2, 3].map((i) => ({ prompt: prompt(`prompt ${i}`), candidate: `candidate answer ${i}`, active: `active answer ${i}` }));
    // Candidate shown as A for pairs 0 and 2, as B for 1 and 3.
    let draw = 0;
    const alternate = () => draw++ % 2 === 0;
    const queued = { evalRunId, candidateVersion: candidate, activeVersion: 'policy-active', minVerdicts: 3, pairs };
    expect(await queueAbPairs(store.db, queued, alternate)).toBe(4);
    // Running the eval again queues nothing and re-draws nothing.
    expect(await queueAbPairs(store.db, queued, () => false)).toBe(0);

    const rows = await store.db.selectFrom('ab_reviews').select(['pair_index', 'output_a', 'output_b', 'candidate_side']).where('eval_run_id', '=', evalRunId).orderBy('pair_index').execute();
    expect(rows.map((r) => [r.candidate_side, r.output_a, r.output_b])).toEqual([
      ['a', 'candidate answer 0', 'active answer 0'],
      ['b', 'active answer 1', 'candidate answer 1'],
      ['a', 'candidate answer 2', 'active answer 2'],
      ['b', 'active answer 3', 'candidate answer 3'],
    ]);

    const page = await listPendingAb(store.db, 3);
    expect(page.pending).toBe(4);
    expect(page.items.map((i) => i.prompt)).toEqual([prompt('prompt 0'), prompt('prompt 1'), prompt('prompt 2')]);
    expect(Object.keys(page.items[0]!).sort()).toEqual(['createdAt', 'id', 'outputA', 'outputB', 'prompt']);
    expect(page.items[1]).toMatchObject({ outputA: 'active answer 1', outputB: 'candidate answer 1' });
    const ids = (await listPendingAb(store.db, 10)).items.map((i) => i.id);

    // Pair 0: A (the candidate) wins; pair 1: A (the active) wins; pair 2: tie.
    expect(await recordAbVerdict(store.db, ids[0]!, 'a', 'key_reviewer000a')).toEqual({ ok: true, id: ids[0], verdict: 'a' });
    expect(await recordAbVerdict(store.db, ids[1]!, 'a', 'key_reviewer000a')).toMatchObject({ ok: true });
    expect(await recordAbVerdict(store.db, ids[2]!, 'tie', 'key_reviewer000b')).toMatchObject({ ok: true });
    expect(await recordAbVerdict(store.db, ids[2]!, 'b', 'key_reviewer000b')).toEqual({ ok: false, code: 'already_decided' });
    expect(await recordAbVerdict(store.db, 'ab-missing', 'b', 'key_reviewer000b')).toEqual({ ok: false, code: 'not_found' });
    const decided = await store.db.selectFrom('ab_reviews').select(['verdict', 'reviewer', 'decided_at']).where('id', '=', ids[2]!).executeTakeFirstOrThrow();
    expect(decided).toMatchObject({ verdict: 'tie', reviewer: 'key_reviewer000b' });
    expect(decided.decided_at).toBeInstanceOf(Date);
    expect((await listPendingAb(store.db, 10)).items.map((i) => i.id)).toEqual([ids[3]]);

    const [summary] = await abSummaries(store.db, [candidate]);
    expect(summary).toMatchObject({
      candidateVersion: candidate,
      activeVersion: 'policy-active',
      items: 4,
      pending: 1,
      verdicts: 3,
      candidateWins: 1,
      activeWins: 1,
      ties: 1,
      winRate: 0.5,
      minVerdicts: 3,
      decided: true,
      decision: 'promote',
    });
    expect(summary!.interval!.low).toBeCloseTo(wilsonInterval(0.5, 3).low, 10);
  });

  it('summarises each candidate on its own, newest first, and refuses one the reviewers clearly prefer the active version to', async () => {
    const older = unique('policy-old');
    const newer = unique('policy-new');
    const queue = (candidateVersion: string, n: number) =>
      queueAbPairs(
        store.db,
        { evalRunId: unique('eval'), candidateVersion, activeVersion: 'policy-active', minVerdicts: 8, pairs: Array.from({ length: n }, (_, i) => ({ prompt: prompt(`p${i}`), candidate: `c${i}`, active: `a${i}` })) },
        () => true,
      );
    await queue(older, 2);
    await new Promise((r) => setTimeout(r, 5));
    await queue(newer, 10);
    const newerIds = (await store.db.selectFrom('ab_reviews').select('id').where('candidate_version', '=', newer).orderBy('pair_index').execute()).map((r) => r.id);
    // The candidate is A everywhere; reviewers pick B (the active version) nine times in ten.
    for (const [i, id] of newerIds.entries()) await recordAbVerdict(store.db, id, i === 0 ? 'a' : 'b', 'key_reviewer000a');

    const summaries = await abSummaries(store.db, [older, newer]);
    expect(summaries.map((s) => s.candidateVersion)).toEqual([newer, older]);
    expect(summaries[0]).toMatchObject({ verdicts: 10, candidateWins: 1, activeWins: 9, winRate: 0.1, decided: true, decision: 'refuse' });
    expect(summaries[0]!.interval!.high).toBeLessThan(0.5);
    expect(summaries[1]).toMatchObject({ items: 2, pending: 2, verdicts: 0, winRate: null, interval: null, decided: false, decision: 'pending' });
    expect(await abSummaries(store.db, [])).toEqual([]);
    expect((await abSummaries(store.db)).map((s) => s.candidateVersion)).toEqual(expect.arrayContaining([older, newer]));
  });
});
