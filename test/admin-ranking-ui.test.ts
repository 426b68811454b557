/**
 * N-way rankings end to end: the compiled gateway on a private nats-server and a throwaway database on this
 * machine's Postgres, Debian's chromium driven by playwright-core. A completion of three choices is published on
 * JetStream as the OpenAI API does. Bad rankings are refused with 400s in the OpenAI error shape by POST /v1/feedback
 * and by POST /admin/api/reviews (one the completion cannot take fails alone there, as any review action does); a
 * user's ranking waits for a reviewer. In the conversation view a reviewer orders the three choices with the ↑ / ↓
 * buttons and submits; the preference export downloaded from the Exports page is its three pairs, byte for byte.
 * Needs /usr/bin/chromium and apps/admin-ui/dist (npm run build:admin-ui).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { JSONCodec } from 'nats';
import { chromium, type Browser, type Page } from 'playwright-core';
import { adminCompletionDetailSchema, completionRecordSubject, newTimeOrderedId, type CompletionRecord } from '@flywheel/contracts';
import { repoRoot, waitFor } from './support/processes';
import { startAdminGateway, type AdminGateway } from './support/admin-gateway';

jest.setTimeout(180_000);

const CHROMIUM = '/usr/bin/chromium';
const USER_KEY = 'sk-flywheel-ranking-ui-user';
const ADMIN_KEY = 'sk-flywheel-ranking-ui-admin';
const SCREENSHOTS = process.env.FLYWHEEL_UI_SCREENSHOTS ?? tmpdir();
const keyIdOf = (key: string) => `key_${createHash('sha256').update(key).digest().subarray(0, 6).toString('hex')}`;
const POLICY = `policy-ranking-${newTimeOrderedId().slice(-8)}`;
const PROMPT = 'Tell me about the moon';
/** #2 is the best answer, #1 the worst; one text carries quotes, so the export's escaping is checked too. */
const TEXTS = ['The moon is a rock.', 'Moon moon moon.', 'The moon circles the Earth; people call it "Luna".'];

let fixture: AdminGateway;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} missing: apt-get install -y chromium`);
  const uiDir = path.join(repoRoot, 'apps', 'admin-ui', 'dist');
  if (!existsSync(path.join(uiDir, 'index.html'))) throw new Error('apps/admin-ui/dist missing: npm run build:admin-ui');
  fixture = await startAdminGateway({ userKey: USER_KEY, adminKey: ADMIN_KEY, name: 'ranking-ui', uiDir: () => uiDir });
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

function threeChoices(): CompletionRecord {
  const id = `chatcmpl-${newTimeOrderedId()}`;
  return {
    id,
    endpoint: 'chat.completions',
    status: 'completed',
    error: null,
    createdAt: new Date().toISOString(),
    model: 'stories260K',
    policyVersion: POLICY,
    request: { model: 'stories260K', messages: [{ role: 'user', content: PROMPT }], n: 3 },
    messages: [{ role: 'user', content: PROMPT }],
    prompts: null,
    choices: TEXTS.map((text, index) => ({ index, promptIndex: 0, text, finishReason: 'stop', tokenIds: [index + 1], logprobs: null })),
    usage: { promptTokens: 6, completionTokens: 9, totalTokens: 15 },
    latencies: { ttftMs: 4, e2eMs: 12, policyTtftMs: 3, policyE2eMs: 11 },
    stream: false,
    user: null,
    keyId: keyIdOf(USER_KEY),
    requestId: `req_${id}`,
    gatewayInstanceId: 'gateway-test',
  };
}

async function postFeedback(body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${fixture.gatewayUrl}/v1/feedback`, {
    method: 'POST',
    headers: { authorization: `Bearer ${USER_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

/** An admin API call from inside the signed-in page (its session cookie and CSRF token). */
async function api(page: Page, method: string, route: string, body?: unknown): Promise<{ status: number; body: any }> {
  return page.evaluate(
    async ({ method, route, body }) => {
      const session: any = await (await fetch('/admin/api/session')).json();
      const res = await fetch(`/admin/api${route}`, {
        method,
        headers: { 'content-type': 'application/json', 'x-csrf-token': session.csrf_token },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, body: await res.json() };
    },
    { method, route, body },
  );
}

describe('n-way rankings', () => {
  it('refuses bad rankings with 400s, takes a reviewer ranking of three in the conversation view and exports its pairs', async () => {
    const record = threeChoices();
    await fixture.nc.jetstream().publish(completionRecordSubject(record.id), JSONCodec<CompletionRecord>().encode(record), { msgID: record.id });
    await waitFor(
      async () => ((await fixture.store.db.selectFrom('completions').select('id').where('id', '=', record.id).execute()).length === 1 ? true : undefined),
      60_000,
      'the completion stored',
    );

    // The feedback API: the shape (zod) and the completion (every choice, once) decide; OpenAI's error shape says why.
    const refusals: Array<[unknown, string, string]> = [
      [[2, 0, 2], 'value[2]', "Invalid value for 'value[2]': choice 2 is ranked twice; rank each choice once."],
      [[1], 'value', "Invalid value for 'value': a ranking orders at least two choices."],
      [[2, 0], 'value', "Invalid value for 'value': a ranking orders every choice of the completion (0 to 2, best first); missing 1."],
      [[2, 0, 1, 3], 'value', "Invalid value for 'value': the completion has 3 choices (0 to 2), got 3."],
    ];
    for (const [value, param, message] of refusals) {
      expect(await postFeedback({ completion_id: record.id, kind: 'ranking', value })).toEqual({
        status: 400,
        body: { error: { message, type: 'invalid_request_error', param, code: 'invalid_value' } },
      });
    }
    // A user's ranking is accepted and waits for a reviewer (so it is in no export).
    const posted = await postFeedback({ completion_id: record.id, kind: 'ranking', value: [1, 2, 0], comment: 'user order' });
    expect(posted).toMatchObject({ status: 200, body: { object: 'feedback', kind: 'ranking', value: [1, 2, 0], review_status: 'pending' } });

    const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, acceptDownloads: true });
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(String(err)));
    await page.goto(`${fixture.gatewayUrl}/admin/`);
    await page.getByLabel('Admin key').fill(ADMIN_KEY);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('table', { name: 'Feedback inbox' }).waitFor();

    // The admin API: a malformed order is a 400 for the whole body; one the completion cannot take fails alone.
    const duplicate = await api(page, 'POST', '/reviews', { actions: [{ action: 'rank', completion_id: record.id, order: [0, 0, 1] }] });
    expect(duplicate).toEqual({
      status: 400,
      body: { error: { message: "Invalid value for 'actions[0].order[1]': choice 0 is ranked twice; rank each choice once.", type: 'invalid_request_error', param: 'actions[0].order[1]', code: 'invalid_value' } },
    });
    const partial = await api(page, 'POST', '/reviews', { actions: [{ action: 'rank', completion_id: record.id, order: [0, 1] }] });
    expect(partial).toEqual({
      status: 200,
      body: {
        applied: 0,
        failed: 1,
        results: [
          {
            ok: false,
            index: 0,
            error: { code: 'invalid_choice', message: `Completion '${record.id}' cannot take this ranking: a ranking orders every choice of the completion (0 to 2, best first); missing 2.` },
          },
        ],
      },
    });

    // The conversation view: the ranking starts in index order; #2 moves to the top, then the ranking is submitted.
    await page.goto(`${fixture.gatewayUrl}/admin/#/c/${encodeURIComponent(record.id)}`);
    const panel = page.getByRole('region', { name: 'Rank the choices' });
    await panel.waitFor();
    const order = async () => (await panel.locator('li[data-choice]').all()).map((li) => li.getAttribute('data-choice'));
    expect(await Promise.all(await order())).toEqual(['0', '1', '2']);
    await expectText(panel.locator('li[data-choice="2"]'), /people call it "Luna"/);
    await panel.getByRole('button', { name: 'Move #2 up' }).click();
    await panel.getByRole('button', { name: 'Move #2 up' }).click();
    expect(await Promise.all(await order())).toEqual(['2', '0', '1']);
    expect(await panel.getByRole('button', { name: 'Move #2 up' }).isDisabled()).toBe(true);
    // Down and back up again: still #2 > #0 > #1.
    await panel.getByRole('button', { name: 'Move #0 down' }).click();
    await panel.getByRole('button', { name: 'Move #0 up' }).click();
    expect(await Promise.all(await order())).toEqual(['2', '0', '1']);
    await expectText(panel, /exports as its 3 \(better, worse\) pairs/);
    await panel.getByRole('button', { name: 'Submit ranking #2 > #0 > #1' }).click();
    const trail = page.getByRole('list', { name: 'Audit trail' });
    await expectText(trail, /rank/);
    await expectText(page.getByRole('region', { name: 'Feedback on the whole completion' }), /#2 > #0 > #1/);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'admin-ui-ranking.png'), fullPage: true });

    const detail = adminCompletionDetailSchema.parse(await api(page, 'GET', `/completions/${record.id}`).then((r) => r.body));
    const reviewerRanking = detail.feedback.find((f) => f.kind === 'ranking' && f.source === 'reviewer');
    expect(reviewerRanking).toMatchObject({ value: [2, 0, 1], review_status: 'approved', choice_index: null });
    expect(detail.feedback.find((f) => f.source === 'user')).toMatchObject({ kind: 'ranking', value: [1, 2, 0], review_status: 'pending' });
    expect(detail.reviews.map((r) => r.action)).toEqual(['rank']);
    expect(detail.review_status).toBe('approved');

    // The preference export from the Exports page: the approved ranking's three pairs, best pair first.
    await page.getByRole('link', { name: 'Exports' }).click();
    await page.getByRole('radio', { name: /PREFERENCE/ }).check();
    await page.getByRole('button', { name: 'Create export' }).click();
    const link = page.getByRole('link', { name: /Download preference export/ }).first();
    await link.waitFor();
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    const prompt = `"prompt":[{"role":"user","content":"${PROMPT}"}]`;
    const answer = (i: number) => JSON.stringify([{ role: 'assistant', content: TEXTS[i] }]);
    expect(readFileSync(await download.path(), 'utf8')).toBe(
      [
        `{${prompt},"chosen":${answer(2)},"rejected":${answer(0)}}\n`,
        `{${prompt},"chosen":${answer(2)},"rejected":${answer(1)}}\n`,
        `{${prompt},"chosen":${answer(0)},"rejected":${answer(1)}}\n`,
      ].join(''),
    );
    expect(answer(2)).toBe('[{"role":"assistant","content":"The moon circles the Earth; people call it \\"Luna\\"."}]');

    expect(pageErrors).toEqual([]);
    await context.close();
  });
});

async function expectText(locator: ReturnType<Page['locator']>, pattern: RegExp, timeoutMs = 10_000): Promise<void> {
  await waitFor(
    async () => (pattern.test((await locator.first().textContent({ timeout: 1000 })) ?? '') ? true : undefined),
    timeoutMs,
    `text ${pattern}`,
  );
}
