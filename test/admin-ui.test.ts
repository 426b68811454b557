/**
 * The admin review UI in a real browser: Debian's chromium driven by playwright-core against the compiled
 * gateway + policy on a private nats-server, writing to a throwaway database on this machine's Postgres.
 * A completion made through the OpenAI SDK and feedback posted to /v1/feedback are found in the inbox,
 * decided with the keyboard, and exported; the downloaded SFT file is checked line by line. Also: a user
 * key cannot reach the admin API, and a mutating call without the CSRF token is refused.
 * Needs /usr/bin/chromium (apt-get install chromium) and apps/admin-ui/dist (npm run build:admin-ui).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { chromium, type Browser, type Page } from 'playwright-core';
import { adminCompletionDetailSchema, sftExportLineSchema } from '@flywheel/contracts';
import { createThrowawayDatabase, type ThrowawayDatabase } from '@flywheel/store/testing';
import { startGatewayMesh, startPrivateNats, type GatewayMesh, type PrivateNats } from './gateway.support';
import { repoRoot, waitFor } from './support/processes';

jest.setTimeout(240_000);

const CHROMIUM = '/usr/bin/chromium';
const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const USER_KEY = 'sk-flywheel-ui-user-0001';
const ADMIN_KEY = 'sk-flywheel-ui-admin-0001';
const SCREENSHOTS = process.env.FLYWHEEL_UI_SCREENSHOTS ?? tmpdir();
/** Unique to this run, so the inbox search finds only what this test made. */
const MARKER = `zebra${Date.now().toString(36)}`;
const CORRECTION = `Once upon a time a little zebra named ${MARKER} found a red ball in the park.`;
const EDITED = `${CORRECTION} She shared it with her friends.`;

let nats: PrivateNats;
let database: ThrowawayDatabase;
let mesh: GatewayMesh;
let stateDir: string;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} missing: apt-get install -y chromium`);
  if (!existsSync(path.join(repoRoot, 'apps', 'admin-ui', 'dist', 'index.html'))) {
    throw new Error('apps/admin-ui/dist missing: npm run build:admin-ui');
  }
  stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-admin-ui-'));
  nats = await startPrivateNats();
  database = await createThrowawayDatabase(ADMIN_URL);
  mesh = await startGatewayMesh(nats.url, USER_KEY, {
    DATABASE_URL: database.url,
    FLYWHEEL_API_KEYS: USER_KEY,
    FLYWHEEL_ADMIN_KEYS: ADMIN_KEY,
    FLYWHEEL_STATE_DIR: stateDir,
    FLYWHEEL_RATE_LIMIT_RPM: '0',
    FLYWHEEL_THREADS: '1',
    FLYWHEEL_MODERATION_TIMEOUT_MS: '300',
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

afterAll(async () => {
  await browser?.close();
  await mesh?.stop();
  await nats?.stop();
  await database?.drop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

async function postFeedback(body: unknown): Promise<{ id: string }> {
  const res = await fetch(`${mesh.gatewayUrl}/v1/feedback`, {
    method: 'POST',
    headers: { authorization: `Bearer ${USER_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json: any = await res.json();
  if (res.status !== 200) throw new Error(`feedback: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

async function rowStatus(page: Page, id: string): Promise<string | null> {
  return page.locator(`tr[data-id="${id}"] .badge`).first().textContent();
}

describe('admin review UI in chromium', () => {
  it('logs in, finds fresh feedback, approves it by keyboard, exports SFT and downloads the file', async () => {
    // A completion through the official SDK, and feedback on it through the feedback API.
    const client = new OpenAI({ apiKey: USER_KEY, baseURL: `${mesh.gatewayUrl}/v1`, maxRetries: 0 });
    const completion = await client.chat.completions.create({
      model: 'stories260K',
      messages: [{ role: 'user', content: `Tell me about ${MARKER}` }],
      n: 2,
      max_tokens: 24,
      seed: 7,
    });
    const correction = await postFeedback({
      completion_id: completion.id,
      choice_index: 0,
      kind: 'correction',
      value: CORRECTION,
      comment: `${MARKER} should be in it`,
    });
    const thumbs = await postFeedback({ completion_id: completion.id, choice_index: 1, kind: 'thumbs', value: 'up', comment: `${MARKER} nice` });
    await waitFor(
      async () => {
        const res = await fetch(`${mesh.gatewayUrl}/v1/feedback?completion_id=${completion.id}`, { headers: { authorization: `Bearer ${USER_KEY}` } });
        const body: any = await res.json();
        return res.status === 200 && body.data.length === 2 ? true : undefined;
      },
      30_000,
      'both feedback stored',
    );

    const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, acceptDownloads: true });
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(String(err)));

    // A user key is refused at the login form.
    await page.goto(`${mesh.gatewayUrl}/admin/`);
    await page.getByLabel('Admin key').fill(USER_KEY);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expectText(page.getByRole('alert'), /not an admin key/);

    await page.getByLabel('Admin key').fill(ADMIN_KEY);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('table', { name: 'Feedback inbox' }).waitFor();

    // Find both feedback by text search (the feedback view searches comments and values).
    await page.getByLabel('Search').fill(MARKER);
    await page.locator(`tr[data-id="${correction.id}"]`).waitFor();
    await page.locator(`tr[data-id="${thumbs.id}"]`).waitFor();
    await page.getByLabel('Search').press('Escape');
    const ids = await Promise.all((await page.locator('tbody tr[data-id]').all()).map((row) => row.getAttribute('data-id')));
    expect([...ids].sort()).toEqual([correction.id, thumbs.id].sort());

    // Keyboard review: j/k to the correction, `a` approves it; x selects the thumbs, `r` rejects the selection.
    const goTo = async (id: string) => {
      await page.keyboard.press('k');
      await page.keyboard.press('k');
      for (let i = 0; i < ids.indexOf(id); i++) await page.keyboard.press('j');
      await expectText(page.locator('tr.cursor'), /./);
      expect(await page.locator('tr.cursor').getAttribute('data-id')).toBe(id);
    };
    await goTo(correction.id);
    await page.keyboard.press('a');
    await waitFor(async () => ((await rowStatus(page, correction.id)) === 'approved' ? true : undefined), 10_000, 'correction approved');
    await goTo(thumbs.id);
    await page.keyboard.press('x');
    expect(await page.locator(`tr[data-id="${thumbs.id}"] input[type=checkbox]`).isChecked()).toBe(true);
    await page.keyboard.press('r');
    await waitFor(async () => ((await rowStatus(page, thumbs.id)) === 'rejected' ? true : undefined), 10_000, 'thumbs rejected');
    const decisions = page.getByRole('complementary', { name: 'Decisions this session' });
    await expectText(decisions, /approve/);
    await expectText(decisions, /reject/);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'admin-ui-inbox.png') });

    // The completions view finds the completion by its prompt text.
    await page.getByRole('button', { name: 'Completions' }).click();
    await page.getByLabel('Status').selectOption('');
    await page.getByRole('table', { name: 'Completions inbox' }).waitFor();
    await expectText(page.locator(`tr[data-id="${completion.id}"]`), new RegExp(`Tell me about ${MARKER}`));
    await page.getByRole('button', { name: 'Feedback', exact: true }).click();
    await page.getByRole('table', { name: 'Feedback inbox' }).waitFor();
    await page.locator(`tr[data-id="${correction.id}"]`).waitFor();
    await page.locator(`tr[data-id="${correction.id}"] td`).nth(1).click();

    // The conversation view: every choice, its feedback, the audit trail; `1` picks choice #0 over #1.
    await goTo(correction.id);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: completion.id }).waitFor();
    for (const choice of completion.choices) {
      const panel = page.getByRole('region', { name: `Choice ${choice.index}` });
      await expectText(panel, new RegExp(escapeRegExp((choice.message.content ?? '').trim().slice(0, 20))));
    }
    await expectText(page.getByRole('region', { name: 'Choice 0' }), new RegExp(MARKER));
    const trail = page.getByRole('list', { name: 'Audit trail' });
    await expectText(trail, /approve/);
    await expectText(trail, /reject/);
    await page.keyboard.press('1');
    await expectText(trail, /choose/);
    // `e` edits the current feedback (the correction, first in reading order); saving approves the new text.
    await page.keyboard.press('e');
    await page.getByRole('dialog', { name: 'Edit correction' }).waitFor();
    await page.getByLabel('Corrected answer').fill(EDITED);
    await page.getByRole('button', { name: 'Save and approve' }).click();
    await expectText(trail, /edit/);
    await expectText(page.getByRole('region', { name: 'Choice 0' }), new RegExp(escapeRegExp(EDITED)));
    await page.screenshot({ path: path.join(SCREENSHOTS, 'admin-ui-conversation.png'), fullPage: true });

    // What the UI showed is what the API says.
    const detail = adminCompletionDetailSchema.parse(
      await page.evaluate(async (id) => (await fetch(`/admin/api/completions/${id}`)).json(), completion.id),
    );
    expect(detail.reviews.map((r) => r.action).sort()).toEqual(['approve', 'choose', 'edit', 'reject']);
    expect(detail.feedback.find((f) => f.id === correction.id)?.review_status).toBe('approved');

    // Shortcut help opens with ? and closes with Escape.
    await page.keyboard.press('?');
    await page.getByRole('dialog', { name: 'Keyboard shortcuts' }).waitFor();
    await page.keyboard.press('Escape');
    await page.getByRole('dialog', { name: 'Keyboard shortcuts' }).waitFor({ state: 'hidden' });

    // Export SFT and download it: exactly the approved (edited) correction, as a TRL messages line.
    await page.keyboard.press('Escape');
    await page.getByRole('link', { name: 'Exports' }).click();
    await page.getByRole('radio', { name: /SFT/ }).check();
    await page.getByRole('button', { name: 'Create export' }).click();
    const link = page.getByRole('link', { name: /Download sft export/ }).first();
    await link.waitFor();
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'admin-ui-exports.png') });
    const file = await download.path();
    const lines = readFileSync(file, 'utf8').split('\n').filter((l) => l.trim() !== '');
    expect(lines).toHaveLength(1);
    const line = sftExportLineSchema.parse(JSON.parse(lines[0]!));
    expect(line.messages).toEqual([
      { role: 'user', content: `Tell me about ${MARKER}` },
      { role: 'assistant', content: EDITED },
    ]);

    // The dashboard draws its charts from /admin/api/stats: three feedback (two users', the reviewer's pick).
    await page.getByRole('link', { name: 'Dashboard' }).click();
    await page.locator('.recharts-surface').first().waitFor();
    const stats = await page.evaluate(async () => {
      const res = await fetch('/admin/api/stats?bucket=day');
      return { status: res.status, body: await res.text() };
    });
    if (stats.status !== 200) throw new Error(`stats: ${stats.status} ${stats.body}\n--- gateway ---\n${mesh.gateway.output().slice(-3000)}`);
    await expectText(page.getByRole('region', { name: 'Totals' }), /^3\s*Feedback/);
    // One reviewer decided each item: no agreement to measure yet, and the overlap is the default one.
    await expectText(page.getByRole('region', { name: 'Agreement' }), /^–\s*Reviewer agreement α .*1\s*Reviewers per item/);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'admin-ui-dashboard.png'), fullPage: true });

    // A mutating call from the logged-in page without the CSRF header is refused.
    const noCsrf = await page.evaluate(async (id) => {
      const res = await fetch('/admin/api/reviews', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ actions: [{ action: 'reset', feedback_id: id }] }),
      });
      return { status: res.status, body: await res.json() };
    }, correction.id);
    expect(noCsrf.status).toBe(403);

    expect(pageErrors).toEqual([]);
    await context.close();
  });

  it('shows a tool-calling conversation as calls and results, not raw tags', async () => {
    const client = new OpenAI({ apiKey: USER_KEY, baseURL: `${mesh.gatewayUrl}/v1`, maxRetries: 0 });
    const tools: OpenAI.ChatCompletionTool[] = [
      { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 8 } }, required: ['city'], additionalProperties: false } } },
    ];
    const first = await client.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'Weather?' }], tools, tool_choice: 'required', parallel_tool_calls: false, seed: 2 });
    const call = first.choices[0]!.message.tool_calls![0]!;
    const second = await client.chat.completions.create({
      model: 'stories260K',
      messages: [
        { role: 'user', content: 'Weather?' },
        { role: 'assistant', content: null, tool_calls: first.choices[0]!.message.tool_calls },
        { role: 'tool', tool_call_id: call.id, content: '{"celsius": 21}' },
      ],
      tools,
      tool_choice: 'required',
      parallel_tool_calls: false,
      seed: 3,
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    await page.goto(`${mesh.gatewayUrl}/admin/`);
    await page.getByLabel('Admin key').fill(ADMIN_KEY);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('table', { name: 'Feedback inbox' }).waitFor();
    // The record reaches the store a moment after the response: reload the conversation until it is there.
    await waitFor(
      async () => {
        await page.goto(`${mesh.gatewayUrl}/admin/#/c/${encodeURIComponent(second.id)}`);
        return (await page.getByRole('heading', { name: second.id }).count()) > 0 ? true : undefined;
      },
      30_000,
      'conversation of the tool-calling completion',
    );
    const prompt = page.getByRole('region', { name: 'Prompt' });
    await prompt.getByLabel('Tool call get_weather').waitFor();
    await expectText(prompt.getByLabel('Tool result'), /"celsius": 21/);
    const answer = page.getByRole('region', { name: 'Choice 0' });
    await answer.getByLabel('Tool call get_weather').waitFor();
    expect(await answer.textContent()).not.toContain('<tool_call>');
    await context.close();
  });

  it('refuses a user key on the admin API', async () => {
    const login = await fetch(`${mesh.gatewayUrl}/admin/api/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ key: USER_KEY }),
    });
    expect(login.status).toBe(403);
    expect(login.headers.get('set-cookie')).toBeNull();
    const bearer = await fetch(`${mesh.gatewayUrl}/admin/api/inbox`, { headers: { authorization: `Bearer ${USER_KEY}` } });
    expect(bearer.status).toBe(403);
    const bearerBody: any = await bearer.json();
    expect(bearerBody.error.type).toBe('permission_error');
    const anonymous = await fetch(`${mesh.gatewayUrl}/admin/api/inbox`);
    expect(anonymous.status).toBe(401);
  });
});

async function expectText(locator: ReturnType<Page['locator']>, pattern: RegExp, timeoutMs = 10_000): Promise<void> {
  await waitFor(
    async () => (pattern.test((await locator.first().textContent({ timeout: 1000 })) ?? '') ? true : undefined),
    timeoutMs,
    `text ${pattern}`,
  );
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
