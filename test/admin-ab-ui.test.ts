/**
 * The admin UI's blind A/B page in a real browser: Debian's chromium driven by playwright-core against the compiled
 * gateway on a private nats-server and a throwaway database on this machine's Postgres. A candidate's pairs are
 * seeded through the store function the eval job calls, with a known A/B order; the API shows them blind and refuses
 * a write without the CSRF token, a bad verdict (400), an unknown id (404) and acting on an undecided candidate (409).
 * The page shows one pair at a time; verdicts are given with the keyboard (1, t, 3) and the mouse (B better), each
 * moving to the next pair; the stored verdicts and the summary (wins, ties, losses by the hidden side, the win rate
 * and its Wilson interval) are checked, and a second candidate the reviewers judged worse is refused from the page.
 * Needs /usr/bin/chromium and apps/admin-ui/dist (npm run build:admin-ui).
 */
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { adminAbQueueSchema, adminAbSummaryListSchema, newTimeOrderedId } from '@flywheel/contracts';
import { queueAbPairs, recordAbVerdict, registerCandidateVersion, wilsonInterval } from '@flywheel/store';
import { repoRoot, waitFor } from './support/processes';
import { startAdminGateway, type AdminGateway } from './support/admin-gateway';

jest.setTimeout(180_000);

const CHROMIUM = '/usr/bin/chromium';
const USER_KEY = 'sk-flywheel-ab-ui-user';
const ADMIN_KEY = 'sk-flywheel-ab-ui-admin';
const SCREENSHOTS = process.env.FLYWHEEL_UI_SCREENSHOTS ?? tmpdir();

let fixture: AdminGateway;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} missing: apt-get install -y chromium`);
  const uiDir = path.join(repoRoot, 'apps', 'admin-ui', 'dist');
  if (!existsSync(path.join(uiDir, 'index.html'))) throw new Error('apps/admin-ui/dist missing: npm run build:admin-ui');
  fixture = await startAdminGateway({ userKey: USER_KEY, adminKey: ADMIN_KEY, name: 'ab-ui', uiDir: () => uiDir });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

afterAll(async () => {
  await browser?.close();
  await fixture?.close();
});

/** An admin API call from inside the signed-in page (its session cookie), with or without the CSRF token. */
async function api(page: Page, method: string, route: string, body?: unknown, csrf = true): Promise<{ status: number; body: any }> {
  return page.evaluate(
    async ({ method, route, body, csrf }) => {
      const session: any = await (await fetch('/admin/api/session')).json();
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (csrf) headers['x-csrf-token'] = session.csrf_token;
      const res = await fetch(`/admin/api${route}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      return { status: res.status, body: await res.json() };
    },
    { method, route, body, csrf },
  );
}

describe('admin A/B page in chromium', () => {
  it('shows pairs blind one at a time, takes verdicts by keyboard and mouse, summarises them and refuses a worse candidate', async () => {
    const { store } = fixture;
    const candidate = `policy-ab-${newTimeOrderedId().slice(-8)}`;
    const worse = `policy-worse-${newTimeOrderedId().slice(-8)}`;
    const prompts = ['a dragon', 'a cat', 'the sea', 'a robot'];
    const pairs = prompts.map((p) => ({ prompt: [{ role: 'user' as const, content: `Tell me about ${p}` }], candidate: `CAND: ${p} story`, active: `ACTIVE: ${p} story` }));
    // The candidate is A on pairs 0 and 2, B on 1 and 3.
    const order = [true, false, true, false];
    let draw = 0;
    await queueAbPairs(store.db, { evalRunId: 'eval-ab-ui-1', candidateVersion: candidate, activeVersion: 'policy-active', minVerdicts: 4, pairs }, () => order[draw++]!);

    // A second candidate, its version registered, that reviewers already judged: the active version wins 4 of 4.
    await registerCandidateVersion(store.db, {
      versionId: worse,
      role: 'policy',
      trainingRun: { id: `ppo-${worse}`, kind: 'ppo', baseVersion: 'policy-active', exportId: null, config: {}, startedAt: new Date(), finishedAt: new Date() },
      checkpoint: '/tmp/none',
      metrics: {},
    });
    await new Promise((r) => setTimeout(r, 5));
    await queueAbPairs(store.db, { evalRunId: 'eval-ab-ui-2', candidateVersion: worse, activeVersion: 'policy-active', minVerdicts: 4, pairs }, () => true);
    const worseIds = (await store.db.selectFrom('ab_reviews').select('id').where('candidate_version', '=', worse).execute()).map((r) => r.id);
    for (const id of worseIds) expect(await recordAbVerdict(store.db, id, 'b', 'key_otherreviewer')).toMatchObject({ ok: true });

    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(String(err)));
    try {
      await page.goto(`${fixture.gatewayUrl}/admin/`);
      await page.getByLabel('Admin key').fill(ADMIN_KEY);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'A/B' }).click();

      // The API: blind items, and its refusals in the admin API's error shape.
      const queue = adminAbQueueSchema.parse((await api(page, 'GET', '/ab')).body);
      expect(queue.pending).toBe(4);
      expect(queue.data.map((i) => i.prompt[0]!.content)).toEqual(prompts.map((p) => `Tell me about ${p}`));
      for (const item of queue.data) expect(Object.keys(item).sort()).toEqual(['created_at', 'id', 'output_a', 'output_b', 'prompt']);
      expect(queue.data[1]).toMatchObject({ output_a: 'ACTIVE: a cat story', output_b: 'CAND: a cat story' });
      const ids = queue.data.map((i) => i.id);
      expect(await api(page, 'POST', `/ab/${ids[0]}`, { verdict: 'a' }, false)).toMatchObject({ status: 403, body: { error: { code: 'csrf_failed' } } });
      expect(await api(page, 'POST', `/ab/${ids[0]}`, { verdict: 'left' })).toMatchObject({ status: 400, body: { error: { type: 'invalid_request_error', param: 'verdict' } } });
      expect(await api(page, 'POST', '/ab/ab-nonexistent', { verdict: 'a' })).toMatchObject({ status: 404, body: { error: { code: 'ab_item_not_found' } } });
      expect(await api(page, 'POST', `/ab/candidates/${candidate}/decide`, {})).toMatchObject({ status: 409, body: { error: { code: 'ab_undecided' } } });
      expect(await api(page, 'POST', '/ab/candidates/policy-nothing/decide', {})).toMatchObject({ status: 404, body: { error: { code: 'ab_not_found' } } });

      // One pair at a time, in queue order; nothing on it names a version or a side.
      const pair = page.getByRole('region', { name: 'Pair to judge' });
      const expectPair = async (i: number) => {
        await waitFor(async () => ((await pair.getAttribute('data-id', { timeout: 1000 }).catch(() => null)) === ids[i] ? true : undefined), 10_000, `pair ${i} shown`);
        await expectText(pair.getByRole('group', { name: 'Prompt' }), new RegExp(`Tell me about ${prompts[i]}`));
        const [a, b] = order[i] ? ['CAND', 'ACTIVE'] : ['ACTIVE', 'CAND'];
        await expectText(pair.getByRole('region', { name: 'Output A' }), new RegExp(`${a}: ${prompts[i]} story`));
        await expectText(pair.getByRole('region', { name: 'Output B' }), new RegExp(`${b}: ${prompts[i]} story`));
        const text = (await pair.textContent()) ?? '';
        expect(text).not.toContain(candidate);
        expect(text).not.toContain('policy-active');
      };
      await expectPair(0);
      await expectText(page.getByTestId('ab-pending'), /^4 pending$/);
      await page.screenshot({ path: path.join(SCREENSHOTS, 'admin-ui-ab.png'), fullPage: true });
      await page.keyboard.press('1'); // A better: the candidate wins pair 0
      await expectPair(1);
      await expectText(page.getByTestId('ab-pending'), /^3 pending · 1 judged this session$/);
      await page.keyboard.press('t'); // tie on pair 1
      await expectPair(2);
      await pair.getByRole('button', { name: /B better/ }).click(); // the active version wins pair 2
      await expectPair(3);
      await page.keyboard.press('3'); // B better: the candidate wins pair 3
      await expectText(page.locator('main'), /No pairs waiting for a verdict/);

      const stored = await store.db.selectFrom('ab_reviews').select(['id', 'verdict', 'reviewer']).where('candidate_version', '=', candidate).orderBy('pair_index').execute();
      expect(stored.map((r) => [r.id, r.verdict])).toEqual([
        [ids[0], 'a'],
        [ids[1], 'tie'],
        [ids[2], 'b'],
        [ids[3], 'b'],
      ]);
      expect(new Set(stored.map((r) => r.reviewer))).toEqual(new Set([expect.stringMatching(/^key_[0-9a-f]{12}$/)]));
      expect(await api(page, 'POST', `/ab/${ids[0]}`, { verdict: 'b' })).toMatchObject({ status: 409, body: { error: { code: 'ab_already_decided' } } });

      // The summary: 2 wins, 1 tie, 1 loss → (2 + ½) / 4, with its Wilson interval; decided, not worse.
      const summary = page.getByRole('table', { name: 'A/B summary' });
      const row = summary.locator(`tr[data-version="${candidate}"]`);
      await expectText(row, /4 \/ 4/);
      const w = wilsonInterval(0.625, 4);
      const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
      expect(await row.locator('td').allTextContents()).toEqual([candidate, 'policy-active', '4 / 4', '2', '1', '1', `63% (${pct(w.low)}–${pct(w.high)})`, 'not worse', 'Promote']);
      const api4 = adminAbSummaryListSchema.parse((await api(page, 'GET', '/ab/summary')).body);
      expect(api4.data.find((s) => s.candidate_version === candidate)).toMatchObject({ verdicts: 4, candidate_wins: 2, ties: 1, active_wins: 1, win_rate: 0.625, decided: true, decision: 'promote' });
      expect(api4.data.map((s) => s.candidate_version)).toEqual([worse, candidate]);

      // The worse candidate: refused from the page, its version row rejected with the A/B evidence.
      const worseRow = summary.locator(`tr[data-version="${worse}"]`);
      await expectText(worseRow, /worse/);
      await worseRow.getByRole('button', { name: `Refuse ${worse}` }).click();
      await expectText(page.getByRole('status'), new RegExp(`Refused ${worse}`));
      const version = await store.db.selectFrom('model_versions').select(['status', 'metrics']).where('id', '=', worse).executeTakeFirstOrThrow();
      expect(version.status).toBe('rejected');
      expect(JSON.stringify(version.metrics)).toMatch(/A\/B win rate 0\.000 .* over 4 verdicts vs policy-active: reviewers prefer the active version/);
      await page.screenshot({ path: path.join(SCREENSHOTS, 'admin-ui-ab-summary.png'), fullPage: true });
      expect(pageErrors).toEqual([]);
    } finally {
      await context.close();
    }
  });
});

async function expectText(locator: ReturnType<Page['locator']>, pattern: RegExp, timeoutMs = 10_000): Promise<void> {
  await waitFor(
    async () => (pattern.test((await locator.first().textContent({ timeout: 1000 })) ?? '') ? true : undefined),
    timeoutMs,
    `text ${pattern}`,
  );
}
