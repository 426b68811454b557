/**
 * The default install, walked through as a user and a reviewer would, in a real browser: `npm start`'s launcher
 * (dist/scripts/launcher/launcher.main.js) with its own nats-server and redis-server on free ports, the embedded
 * Postgres (no DATABASE_URL) and the dev API key it writes to the state folder. A chat completion with two choices
 * through the official `openai` SDK; thumbs, a rating and a preference on it through /v1/feedback; the reviewer
 * approves them in the admin UI's Inbox (Debian's chromium driven by playwright-core); the rest of 60 approved
 * preference pairs (the demo's "happy ending beats sad ending" set: their two-choice completion records go on the
 * gateway's COMPLETIONS stream, since the tiny model cannot be made to tell those stories, then each preference
 * through /v1/feedback and the admin API's approve route); Runs → Start run now runs the loop with its DEFAULT
 * settings to its end; the promoted version is active on Models and in /v1/models and answers the next chat.
 * Ctrl-C (SIGINT) stops it all, exit 0. A refused candidate fails the test with the gate's reasons.
 * Not a test of the loop's numbers (trainer-loop, rl-demo) nor of the UI's corners (admin-ui, admin-runs-ui).
 * With FLYWHEEL_UPDATE_SCREENSHOTS=1 the Inbox, the loop run's page and Models are saved to docs/screenshots/.
 * Needs /usr/bin/chromium, nats-server, redis-server, dist/ (npm run build:ts) and apps/admin-ui/dist.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect, JSONCodec, type NatsConnection } from 'nats';
import OpenAI from 'openai';
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { z } from 'zod';
import {
  adminReviewsResponseSchema,
  adminSessionSchema,
  completionRecordSchema,
  completionRecordSubject,
  newTimeOrderedId,
  trainingRunDetailSchema,
  type TrainingRunDetail,
} from '@flywheel/contracts';
import { keyIdOf } from '../apps/gateway/src/auth/api-keys';
import { happyEndingPreferences, PREFERENCE_RULE } from '../scripts/demo/happy-endings';
import { freePort, getJson, portsEnv, repoRoot, run, stop, waitFor, type Running } from './support/processes';

const CHROMIUM = '/usr/bin/chromium';
const LAUNCHER = path.join(repoRoot, 'dist', 'scripts', 'launcher', 'launcher.main.js');
const ADMIN_KEY = 'sk-flywheel-walkthrough-admin';
/** Approved preference pairs the loop trains on: the walkthrough's own one and the demo set's first PAIRS - 1. */
const PAIRS = 60;
const MODEL = 'stories260K';
const SCREENSHOTS = process.env.FLYWHEEL_UI_SCREENSHOTS ?? tmpdir();
const VIEWPORT = { width: 1280, height: 800 };
/** The loop run, bounded: the defaults end in about a minute on 2 cores. */
const LOOP_TIMEOUT_MS = 6 * 60_000;

const feedbackAnswerSchema = z.object({ id: z.string(), review_status: z.enum(['pending', 'approved', 'rejected']) });
const feedbackListSchema = z.object({ object: z.literal('list'), data: z.array(feedbackAnswerSchema) });
const modelsAnswerSchema = z.object({ data: z.array(z.object({ id: z.string(), policy_version: z.string() })) });
const loopSummarySchema = z.object({
  promoted: z.boolean().optional(),
  reasons: z.array(z.string()).optional(),
  stopped_because: z.string().optional(),
  candidate_version: z.string().optional(),
});

let stateDir: string;
let launcher: Running | undefined;
let gatewayUrl: string;
let natsUrl: string;
let devKey: string;
let client: OpenAI;
let browser: Browser | undefined;
let context: BrowserContext | undefined;
let page: Page;
const pageErrors: string[] = [];

/** What the steps hand each other. */
const walk: {
  completion?: OpenAI.Chat.Completions.ChatCompletion;
  feedbackIds: string[];
  runId?: string;
  stagesSeen: string[];
  progressSeen: string[];
  candidate?: string;
} = { feedbackIds: [], stagesSeen: [], progressSeen: [] };

beforeAll(async () => {
  for (const [file, fix] of [
    [CHROMIUM, 'apt-get install -y chromium'],
    [LAUNCHER, 'npm run build:ts'],
    [path.join(repoRoot, 'apps', 'admin-ui', 'dist', 'index.html'), 'npm run build:admin-ui'],
  ] as const) {
    if (!existsSync(file)) throw new Error(`${file} missing: ${fix}`);
  }
  stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-walkthrough-'));
  const ports = await portsEnv();
  gatewayUrl = `http://127.0.0.1:${ports.FLYWHEEL_GATEWAY_PORT}`;
  natsUrl = `nats://127.0.0.1:${await freePort()}`;
  // As a user runs `npm start`: nothing configured but where things listen (settings this shell may carry are
  // dropped, so model and loop are the defaults); the launcher starts its own NATS and Redis (nothing listens on
  // these ports), the embedded Postgres (no DATABASE_URL) and creates the dev key (no FLYWHEEL_API_KEYS).
  const inherited = Object.keys(process.env).filter((k) => k.startsWith('FLYWHEEL_') || k === 'DATABASE_URL' || k === 'NATS_URL' || k === 'REDIS_URL');
  launcher = run(process.execPath, [LAUNCHER], {
    ...Object.fromEntries(inherited.map((k) => [k, undefined])),
    ...ports,
    NATS_URL: natsUrl,
    REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    FLYWHEEL_STATE_DIR: stateDir,
    FLYWHEEL_ADMIN_KEYS: ADMIN_KEY,
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  context = await browser.newContext({ viewport: VIEWPORT });
  page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(String(err)));
}, 60_000);

afterAll(async () => {
  await context?.close().catch(() => undefined);
  await browser?.close().catch(() => undefined);
  // SIGINT as Ctrl-C (the last step asserts it); SIGKILL after 10 s if a step failed and it hangs.
  await stop(launcher, 'SIGINT');
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
}, 60_000);

/** One step of the walkthrough: it runs only when every step before it passed, and a failure carries the launcher's log. */
let broken: string | null = null;
function step(name: string, timeoutMs: number, body: () => Promise<void>): void {
  it(
    name,
    async () => {
      if (broken) throw new Error(`not run: step "${broken}" did not pass`);
      broken = name;
      try {
        await body();
      } catch (err) {
        // The gateway's per-request lines drown everything else: leave them out.
        const lines = (launcher?.output() ?? '').split('\n').filter((l) => !l.includes('"msg":"request"'));
        throw new Error(`${err instanceof Error ? err.message : String(err)}\n--- launcher (last lines, requests left out) ---\n${lines.slice(-60).join('\n')}`);
      }
      broken = null;
    },
    timeoutMs,
  );
}

describe('the default install, walked through in a browser', () => {
  step('npm start: the launcher brings up its own NATS, Redis, embedded Postgres and all five services, and writes a dev key', 120_000, async () => {
    await waitFor(
      async () => {
        const h = await getJson(`${gatewayUrl}/healthz`).catch(() => null);
        return h?.status === 200 ? true : undefined;
      },
      90_000,
      'every service up (GET /healthz 200)',
    );
    const out = launcher!.output();
    expect(out).toContain(`started nats-server for ${natsUrl}`);
    expect(out).toMatch(/started redis-server for redis:\/\/127\.0\.0\.1:\d+/);
    expect(out).toMatch(/embedded Postgres at postgresql:\/\//);
    const keyFile = path.join(stateDir, 'dev-api-key');
    devKey = await waitFor(async () => (existsSync(keyFile) ? readFileSync(keyFile, 'utf8').trim() || undefined : undefined), 10_000, 'the dev key');
    client = new OpenAI({ apiKey: devKey, baseURL: `${gatewayUrl}/v1`, maxRetries: 0 });
    // The store is open once the feedback API can read it.
    await waitFor(
      async () => {
        const res = await fetch(`${gatewayUrl}/v1/feedback?completion_id=chatcmpl-none`, { headers: { authorization: `Bearer ${devKey}` } });
        return res.status === 200 ? true : undefined;
      },
      60_000,
      'the gateway’s store open',
    );
  });

  step('chat: a completion with two choices through the openai SDK, served by the base version', 60_000, async () => {
    const completion = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Tell me a story about Lily and the dog.' }],
      n: 2,
      max_tokens: 48,
      seed: 11,
    });
    expect(completion.choices.map((c) => c.index)).toEqual([0, 1]);
    for (const c of completion.choices) expect((c.message.content ?? '').length).toBeGreaterThan(0);
    expect(completion.system_fingerprint).toBe('base');
    walk.completion = completion;
  });

  step('feedback: thumbs, a 1-5 rating and a preference between the two choices through /v1/feedback', 60_000, async () => {
    const id = walk.completion!.id;
    const bodies = [
      { completion_id: id, choice_index: 0, kind: 'thumbs', value: 'up', comment: 'walkthrough: nice start' },
      { completion_id: id, choice_index: 1, kind: 'rating', value: 2, comment: 'walkthrough: loses the thread' },
      { completion_id: id, kind: 'preference', value: { chosen: 0, rejected: 1 }, comment: 'walkthrough: the first one' },
    ];
    for (const body of bodies) walk.feedbackIds.push((await postFeedback(body)).id);
    await waitFor(
      async () => ((await feedbackOf(id)).length === bodies.length ? true : undefined),
      30_000,
      'the three feedback stored',
    );
  });

  step('review: the reviewer reads the conversation and approves the three feedback in the Inbox', 90_000, async () => {
    await page.goto(`${gatewayUrl}/admin/`);
    await page.getByLabel('Admin key').fill(ADMIN_KEY);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const inbox = page.getByRole('table', { name: 'Feedback inbox' });
    for (const id of walk.feedbackIds) await inbox.locator(`tr[data-id="${id}"]`).waitFor();
    for (const id of walk.feedbackIds) expect(await statusOf(inbox.locator(`tr[data-id="${id}"]`))).toBe('pending');

    // The conversation: both choices, side by side with their feedback; Esc back to the inbox.
    const completion = walk.completion!;
    await inbox.locator(`tr[data-id="${walk.feedbackIds[2]}"]`).dblclick();
    await page.getByRole('heading', { name: completion.id }).waitFor();
    for (const choice of completion.choices) {
      const start = (choice.message.content ?? '').trim().slice(0, 20);
      await expectText(page.getByRole('region', { name: `Choice ${choice.index}` }), new RegExp(escapeRegExp(start)));
    }
    await page.keyboard.press('Escape');

    // Select every row, Approve.
    for (const id of walk.feedbackIds) await inbox.locator(`tr[data-id="${id}"]`).waitFor();
    await page.getByLabel('Select every row on this page').check();
    await page.getByRole('toolbar', { name: 'Bulk actions' }).getByRole('button', { name: /Approve/ }).click();
    for (const id of walk.feedbackIds) {
      await waitFor(async () => ((await statusOf(inbox.locator(`tr[data-id="${id}"]`))) === 'approved' ? true : undefined), 10_000, `${id} approved`);
    }
    await expectText(page.getByRole('complementary', { name: 'Decisions this session' }), /approve/);
    await screenshot('inbox');
    // What the UI showed is what the feedback API now says.
    expect((await feedbackOf(completion.id)).map((f) => f.review_status)).toEqual(['approved', 'approved', 'approved']);
  });

  step(`data: ${PAIRS - 1} more approved preference pairs (${PREFERENCE_RULE}) through the feedback API and the admin API's approve route`, 120_000, async () => {
    const nc = await connect({ servers: natsUrl, name: 'walkthrough-seed' });
    try {
      const feedbackIds = await seedPreferencePairs(nc, PAIRS - 1);
      await approveThroughAdminApi(feedbackIds);
    } finally {
      await nc.drain();
    }
  });

  step('loop: Runs → Start run now; the run shows its stages and progress and ends promoted', LOOP_TIMEOUT_MS + 60_000, async () => {
    await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Runs' }).click();
    const panel = page.getByRole('region', { name: 'Training loop' });
    await expectText(panel.getByTestId('loop-state'), /^Active$/);
    // Every approved preference pair counts toward the next run (the walkthrough's one and the seeded ones).
    await expectText(panel, new RegExp(`${PAIRS} / \\d+`), 15_000);
    const start = page.getByRole('button', { name: 'Start run now' });
    await waitFor(async () => ((await start.isEnabled()) ? true : undefined), 15_000, 'Start run now enabled');
    await start.click();

    const running = panel.getByTestId('loop-running').locator('a').first();
    const runId = await waitFor(async () => ((await running.textContent({ timeout: 1000 })) ?? '').match(/^loop-\S+$/)?.[0], 15_000, 'the run in the panel');
    walk.runId = runId;
    const row = page.getByRole('table', { name: 'Training runs' }).locator(`tr[data-id="${runId}"]`);
    await row.waitFor();

    // Follow it on the page as a reviewer would watch it: the panel's stage and progress, the row's status.
    const progress = panel.getByTestId('stage-progress');
    const status = await waitFor(
      async () => {
        if ((await progress.count()) > 0) {
          const stage = await progress.getAttribute('data-stage', { timeout: 1000 }).catch(() => null);
          if (stage && walk.stagesSeen[walk.stagesSeen.length - 1] !== stage) walk.stagesSeen.push(stage);
          const text = (await progress.getByTestId('stage-progress-text').textContent({ timeout: 1000 }).catch(() => null)) ?? '';
          if (/step \d+ \/ \d+/.test(text) && !walk.progressSeen.includes(text)) walk.progressSeen.push(text);
        }
        const s = await statusOf(row).catch(() => null);
        return s === 'succeeded' || s === 'failed' || s === 'cancelled' ? s : undefined;
      },
      LOOP_TIMEOUT_MS,
      `${runId} to end`,
    );
    await expectText(panel.getByTestId('loop-running'), /idle/);
    const detail = await adminGet(`/admin/api/runs/${encodeURIComponent(runId)}`, trainingRunDetailSchema);
    if (status !== 'succeeded') throw new Error(`${runId} ${status}${detail.stage ? ` at stage ${detail.stage}` : ''}: ${detail.error ?? 'no error recorded'}`);
    const summary = loopSummarySchema.parse(detail.metrics);
    if (!summary.promoted) throw new Error(`${runId} ended without promoting a version: ${refusalOf(summary, detail)}`);
    walk.candidate = summary.candidate_version;
    expect(walk.candidate).toMatch(new RegExp(`^${runId}-ppo$`));
    expect(walk.stagesSeen).toEqual(expect.arrayContaining(['reward-train', 'ppo']));
    expect(walk.progressSeen.length).toBeGreaterThan(0);
    expect(detail.children.map((c) => [c.kind, c.status])).toEqual([
      ['reward-train', 'succeeded'],
      ['ppo', 'succeeded'],
      ['eval', 'succeeded'],
    ]);

    // The run's page: its stages, each stage's curves, the version it produced.
    await row.locator('a').first().click();
    await page.getByRole('heading', { name: runId, exact: true }).waitFor();
    await expectText(page.locator('dl[aria-label="Summary metrics"]'), /promoted\s*true/);
    const stages = page.getByRole('table', { name: 'Stage runs' });
    for (const child of detail.children) await expectText(stages.locator(`tr[data-id="${child.id}"]`), /succeeded/);
    await expectCurves(page.getByRole('region', { name: 'Curves of ppo stage' }).getByRole('figure', { name: 'Reward (mean ± std)' }), 1);
    await expectCurves(page.getByRole('region', { name: 'Curves of ppo stage' }).getByRole('figure', { name: 'KL' }), 3);
    await expectCurves(page.getByRole('region', { name: 'Curves of reward-train stage' }).getByRole('figure', { name: 'Loss' }), 1);
    await page.getByRole('table', { name: 'Versions produced' }).locator(`tr[data-version="${walk.candidate}"]`).waitFor();
    await screenshot('runs');
  });

  step('serve: Models shows the new version active, /v1/models names it, and the next chat is answered by it', 90_000, async () => {
    const candidate = walk.candidate!;
    await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Models' }).click();
    const versions = page.getByRole('table', { name: 'Policy versions' });
    await expectText(versions.locator(`tr[data-version="${candidate}"]`), /active/);
    await expectText(versions.locator('tr[data-version="base"]'), /previous/);
    // The gate's evidence beside the promoted version: passed, its gain, and KL to the version it replaced and to the base.
    await expectText(page.getByLabel(`Eval gate of ${candidate}`), /passed\s*gain -?\d+\.\d{2}σ · KL \d+\.\d{2} · to base \d+\.\d{2}/);
    await expectText(page.getByRole('main', { name: 'Models' }), new RegExp(`Serving\\s*${escapeRegExp(candidate)}`));
    await screenshot('models');
    const models = modelsAnswerSchema.parse({ data: (await client.models.list()).data });
    expect(models.data).toEqual([expect.objectContaining({ id: MODEL, policy_version: candidate })]);

    // The policy replica hot-swaps on the promotion's KV write: poll briefly for the new fingerprint.
    const answered = await waitFor(
      async () => {
        const c = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Tell me a story about Mia and the duck.' }], max_tokens: 32 });
        return c.system_fingerprint === candidate ? c : undefined;
      },
      30_000,
      `a chat answered by ${candidate}`,
    );
    expect((answered.choices[0]?.message.content ?? '').length).toBeGreaterThan(0);
    expect(pageErrors).toEqual([]);
  });

  step('stop: Ctrl-C (SIGINT) stops everything the launcher started, exit code 0', 60_000, async () => {
    const r = launcher!;
    r.child.kill('SIGINT');
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([r.exited, new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), 45_000)))]);
    clearTimeout(timer);
    expect(code).toBe(0);
    expect(r.output()).toMatch(/\[gateway\]\s+exited/);
    expect(existsSync(path.join(stateDir, 'store.lock'))).toBe(false);
  });
});

async function postFeedback(body: unknown): Promise<z.infer<typeof feedbackAnswerSchema>> {
  const res = await fetch(`${gatewayUrl}/v1/feedback`, {
    method: 'POST',
    headers: { authorization: `Bearer ${devKey}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json: unknown = await res.json();
  if (res.status !== 200) throw new Error(`POST /v1/feedback: ${res.status} ${JSON.stringify(json)}`);
  return feedbackAnswerSchema.parse(json);
}

async function feedbackOf(completionId: string): Promise<z.infer<typeof feedbackAnswerSchema>[]> {
  const res = await fetch(`${gatewayUrl}/v1/feedback?completion_id=${encodeURIComponent(completionId)}`, { headers: { authorization: `Bearer ${devKey}` } });
  if (res.status !== 200) throw new Error(`GET /v1/feedback: ${res.status} ${await res.text()}`);
  return feedbackListSchema.parse(await res.json()).data;
}

/**
 * n pairs of the demo's happy-ending set as the loop bench seeds them (the chosen telling first on even pairs,
 * second on odd ones, so position says nothing), each a chat completion with two choices owned by the dev key.
 * The tiny model cannot be made to tell these stories, so the completion records are published on the gateway's
 * COMPLETIONS stream (as the gateway does after serving one; its store writer persists them); each pair's
 * preference then goes through the public feedback API. Returns the feedback ids.
 */
async function seedPreferencePairs(nc: NatsConnection, n: number): Promise<string[]> {
  const codec = JSONCodec<unknown>();
  const js = nc.jetstream();
  const keyId = keyIdOf(devKey);
  const ids: string[] = [];
  for (const [i, pair] of happyEndingPreferences(n).entries()) {
    const id = `chatcmpl-${newTimeOrderedId()}`;
    const chosenFirst = i % 2 === 0;
    const texts = chosenFirst ? [pair.chosen[0].content, pair.rejected[0].content] : [pair.rejected[0].content, pair.chosen[0].content];
    const record = completionRecordSchema.parse({
      id,
      endpoint: 'chat.completions',
      status: 'completed',
      error: null,
      createdAt: new Date().toISOString(),
      model: MODEL,
      policyVersion: 'base',
      request: { model: MODEL, messages: pair.prompt, n: 2 },
      messages: pair.prompt,
      prompts: null,
      choices: texts.map((text, index) => ({ index, promptIndex: 0, text, finishReason: 'stop', tokenIds: [], logprobs: null })),
      usage: { promptTokens: 0, completionTokens: 0, totalTokens: 0 },
      latencies: { ttftMs: null, e2eMs: 0, policyTtftMs: null, policyE2eMs: null },
      stream: false,
      user: null,
      keyId,
      requestId: `walkthrough-seed-${i}`,
      gatewayInstanceId: 'walkthrough-seed',
    });
    await js.publish(completionRecordSubject(id), codec.encode(record), { msgID: id });
    const feedback = await postFeedback({ completion_id: id, kind: 'preference', value: { chosen: chosenFirst ? 0 : 1, rejected: chosenFirst ? 1 : 0 } });
    ids.push(feedback.id);
  }
  return ids;
}

/** POST /admin/api/reviews with approve actions, retried for the ones the store writer has not stored yet. */
async function approveThroughAdminApi(feedbackIds: string[]): Promise<void> {
  let left = feedbackIds;
  await waitFor(
    async () => {
      const answer = await adminPost('/admin/api/reviews', { actions: left.map((feedback_id) => ({ action: 'approve', feedback_id })) }, adminReviewsResponseSchema);
      left = answer.results.flatMap((r) => (r.ok ? [] : [left[r.index]!]));
      return left.length === 0 ? true : undefined;
    },
    30_000,
    'every seeded preference approved',
  );
}

/** The node side's own admin session (cookie + CSRF), for the seeding and the checks. */
let adminSession: { cookie: string; csrf: string } | null = null;
async function session(): Promise<{ cookie: string; csrf: string }> {
  if (adminSession) return adminSession;
  const res = await fetch(`${gatewayUrl}/admin/api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: ADMIN_KEY }) });
  if (res.status !== 200) throw new Error(`admin login: ${res.status} ${await res.text()}`);
  const body = adminSessionSchema.parse(await res.json());
  adminSession = { cookie: (res.headers.get('set-cookie') ?? '').split(';')[0] ?? '', csrf: body.csrf_token };
  return adminSession;
}

async function adminGet<T>(route: string, schema: z.ZodType<T>): Promise<T> {
  const res = await fetch(`${gatewayUrl}${route}`, { headers: { cookie: (await session()).cookie } });
  if (res.status !== 200) throw new Error(`GET ${route}: ${res.status} ${await res.text()}`);
  return schema.parse(await res.json());
}

async function adminPost<T>(route: string, body: unknown, schema: z.ZodType<T>): Promise<T> {
  const s = await session();
  const res = await fetch(`${gatewayUrl}${route}`, {
    method: 'POST',
    headers: { cookie: s.cookie, 'x-csrf-token': s.csrf, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.status !== 200) throw new Error(`POST ${route}: ${res.status} ${await res.text()}`);
  return schema.parse(await res.json());
}

/** Why a loop run that ended did not promote: the stop reason, else the eval gate's reasons with its numbers. */
function refusalOf(summary: z.infer<typeof loopSummarySchema>, detail: TrainingRunDetail): string {
  if (summary.stopped_because) return summary.stopped_because;
  const numbers = ['reward_before', 'reward_after', 'reward_gain_std', 'kl', 'flag_rate_before', 'flag_rate_after', 'rm_heldout_accuracy']
    .map((k) => `${k} ${JSON.stringify(detail.metrics[k] ?? null)}`)
    .join(', ');
  return `${summary.reasons?.join('; ') || 'no reasons recorded'} (${numbers})`;
}

/** Full-page PNG under SCREENSHOTS (walkthrough-<name>.png), and docs/screenshots/<name>.png on request only. */
async function screenshot(name: 'inbox' | 'runs' | 'models'): Promise<void> {
  await page.screenshot({ path: path.join(SCREENSHOTS, `walkthrough-${name}.png`), fullPage: true });
  if (process.env.FLYWHEEL_UPDATE_SCREENSHOTS === '1') {
    mkdirSync(path.join(repoRoot, 'docs', 'screenshots'), { recursive: true });
    await page.screenshot({ path: path.join(repoRoot, 'docs', 'screenshots', `${name}.png`), fullPage: true });
  }
}

async function statusOf(row: Locator): Promise<string | null> {
  return row.locator('.badge').first().textContent({ timeout: 1000 });
}

/** The figure draws `lines` curves, each an SVG path with real segments. */
async function expectCurves(figure: Locator, lines: number): Promise<void> {
  await figure.waitFor();
  await waitFor(
    async () => {
      const ds = await Promise.all((await figure.locator('path.recharts-line-curve').all()).map((l) => l.getAttribute('d')));
      return ds.length === lines && ds.every((d) => (d?.match(/L/g) ?? []).length >= 3) ? true : undefined;
    },
    10_000,
    `${lines} curves drawn`,
  );
}

async function expectText(locator: Locator, pattern: RegExp, timeoutMs = 10_000): Promise<void> {
  await waitFor(
    async () => (pattern.test((await locator.first().textContent({ timeout: 1000 })) ?? '') ? true : undefined),
    timeoutMs,
    `text ${pattern}`,
  );
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
