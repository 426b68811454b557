/**
 * Reviewers' moderation labels through the admin UI in a real browser: Debian's chromium driven by playwright-core
 * against the compiled gateway (no policy) on a private nats-server and a throwaway database on this machine's
 * Postgres. A chat completion is published on JetStream as the OpenAI API does, with input moderation having
 * flagged its prompt and output moderation having let its choice 0 through. In the conversation view the reviewer
 * marks choice 0 harmful (`illicit`) and the prompt "Not harmful"; the admin API's completion detail and a
 * `moderation` export then hold both labels with their categories, direction and `overturns`. The Models page
 * switches to the moderation role, starts a retraining against a stand-in trainer on trainer.moderation, shows a
 * published moderation version's held-out evidence and promotes it, after which the gateway's in-process moderator
 * serves it.
 * Needs /usr/bin/chromium and apps/admin-ui/dist (npm run build:admin-ui).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { JSONCodec, type Subscription } from 'nats';
import { chromium, type Browser, type Page } from 'playwright-core';
import {
  MODERATION_TRAIN_SUBJECT,
  adminCompletionDetailSchema,
  adminExportSchema,
  adminSessionSchema,
  completionRecordSubject,
  moderationExportLineSchema,
  moderationTrainStartSchema,
  nestRequestPacketSchema,
  newTimeOrderedId,
  type CompletionRecord,
  type ModerationTrainStart,
} from '@flywheel/contracts';
import { putCheckpoint, readActive } from '@flywheel/mesh';
import { findModelVersion, recordVersionEval } from '@flywheel/store';
import { repoRoot, waitFor } from './support/processes';
import { startAdminGateway, type AdminGateway } from './support/admin-gateway';

jest.setTimeout(120_000);

const CHROMIUM = '/usr/bin/chromium';
const USER_KEY = 'sk-flywheel-moderation-ui-user';
const ADMIN_KEY = 'sk-flywheel-moderation-ui-admin';
const SCREENSHOTS = process.env.FLYWHEEL_UI_SCREENSHOTS ?? tmpdir();
const keyIdOf = (key: string) => `key_${createHash('sha256').update(key).digest().subarray(0, 6).toString('hex')}`;

const FIRST_QUESTION = 'What is a lock?';
const PROMPT = 'Tell me how locks are picked, you idiot.';
const ANSWER_0 = 'First you buy a tension wrench and a set of picks from a shady seller, then you go to your neighbour’s door.';
const ANSWER_1 = 'A lock keeps a door shut until the right key turns it.';

let fixture: AdminGateway;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} missing: apt-get install -y chromium`);
  const uiDir = path.join(repoRoot, 'apps', 'admin-ui', 'dist');
  if (!existsSync(path.join(uiDir, 'index.html'))) throw new Error('apps/admin-ui/dist missing: npm run build:admin-ui');
  fixture = await startAdminGateway({ userKey: USER_KEY, adminKey: ADMIN_KEY, name: 'moderation-ui', uiDir: () => uiDir });
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

const verdict = { scores: {}, matches: [], pii: [] };

/** Input moderation flagged the prompt as harassment; output moderation allowed choice 0 and flagged choice 1. */
function flaggedChat(): CompletionRecord {
  const id = `chatcmpl-${newTimeOrderedId()}`;
  const messages = [
    { role: 'system' as const, content: 'You are a helpful assistant.' },
    { role: 'user' as const, content: FIRST_QUESTION },
    { role: 'assistant' as const, content: 'A device that keeps a door shut.' },
    { role: 'user' as const, content: PROMPT },
  ];
  return {
    id,
    endpoint: 'chat.completions',
    status: 'completed',
    error: null,
    createdAt: new Date().toISOString(),
    model: 'stories260K',
    policyVersion: 'base',
    request: { model: 'stories260K', messages, n: 2 },
    messages,
    prompts: null,
    choices: [
      { index: 0, promptIndex: 0, text: ANSWER_0, finishReason: 'stop', tokenIds: [1, 2, 3], logprobs: null },
      { index: 1, promptIndex: 0, text: ANSWER_1, finishReason: 'stop', tokenIds: [4, 5], logprobs: null },
    ],
    usage: { promptTokens: 30, completionTokens: 5, totalTokens: 35 },
    latencies: { ttftMs: 4, e2eMs: 12, policyTtftMs: 3, policyE2eMs: 11 },
    stream: false,
    user: null,
    keyId: keyIdOf(USER_KEY),
    requestId: `req_${id}`,
    gatewayInstanceId: 'gateway-test',
    moderation: {
      input: { ...verdict, action: 'flag', blockedCategories: [], flaggedCategories: ['harassment'], model: 'flywheel-moderation', source: 'service' },
      output: [
        { ...verdict, index: 0, action: 'allow', blockedCategories: [], flaggedCategories: [], cutOffset: null, generatedChars: ANSWER_0.length },
        { ...verdict, index: 1, action: 'flag', blockedCategories: [], flaggedCategories: ['violence'], cutOffset: null, generatedChars: ANSWER_1.length },
      ],
    },
  };
}

/** A stand-in trainer on trainer.moderation (Nest's wire format): queues the first start, then refuses as one is running. */
function fakeModerationTrainer(): { sub: Subscription; starts: ModerationTrainStart[] } {
  const codec = JSONCodec<unknown>();
  const starts: ModerationTrainStart[] = [];
  const sub = fixture.nc.subscribe(MODERATION_TRAIN_SUBJECT, {
    callback: (_err, msg) => {
      const packet = nestRequestPacketSchema.parse(codec.decode(msg.data));
      starts.push(moderationTrainStartSchema.parse(packet.data));
      const response =
        starts.length === 1
          ? { ok: true, job_id: 'job-moderation-1', run_id: 'moderation-train-ui-1', export_id: 'exp-ui-1', rows: 2 }
          : { ok: false, code: 'already_running', message: 'a moderation-train job is already queued or running' };
      msg.respond(codec.encode({ id: packet.id, response, isDisposed: true }));
    },
  });
  return { sub, starts };
}

describe('moderation labels in the admin UI (chromium)', () => {
  it('marks a choice moderation let through harmful and a flagged prompt not harmful; the API and the export agree', async () => {
    const record = flaggedChat();
    await fixture.nc.jetstream().publish(completionRecordSubject(record.id), JSONCodec<CompletionRecord>().encode(record), { msgID: record.id });
    await waitFor(
      async () => ((await fixture.store.db.selectFrom('completions').select('id').where('id', '=', record.id).executeTakeFirst()) ? true : undefined),
      30_000,
      'the completion in the store',
    );
    const trainer = fakeModerationTrainer();

    const context = await browser.newContext({ viewport: { width: 1440, height: 1000 } });
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(String(err)));
    await page.goto(`${fixture.gatewayUrl}/admin/`);
    await page.getByLabel('Admin key').fill(ADMIN_KEY);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('table', { name: 'Feedback inbox' }).waitFor();
    await page.goto(`${fixture.gatewayUrl}/admin/#/c/${encodeURIComponent(record.id)}`);
    await page.getByRole('heading', { name: record.id }).waitFor();

    // What moderation decided is shown beside each text, with no reviewer label yet.
    const choice0 = page.getByRole('group', { name: 'Moderation of choice 0' });
    const prompt = page.getByRole('group', { name: 'Moderation of prompt' });
    await expectText(choice0, /allow.*no reviewer label/);
    await expectText(prompt, /flag harassment.*no reviewer label/);
    await expectText(page.getByRole('group', { name: 'Moderation of choice 1' }), /flag violence/);
    // The earlier user message of the conversation has its own control.
    await page.getByRole('group', { name: 'Moderation of message 1' }).waitFor();

    // Choice 0, which moderation let through, is harmful (illicit).
    await choice0.getByRole('button', { name: 'Mark choice 0 harmful' }).click();
    await choice0.getByRole('checkbox', { name: 'illicit', exact: true }).check();
    await choice0.getByRole('button', { name: 'Save harmful label on choice 0' }).click();
    await expectText(page.getByRole('status'), /Labelled choice 0 harmful \(illicit\): overturns moderation/);
    await expectText(choice0, /harmful: illicit.*overturns moderation/);
    expect(await choice0.getByRole('checkbox').count()).toBe(0);

    // The prompt, which moderation flagged as harassment, is not harmful.
    await prompt.getByRole('button', { name: 'Mark prompt not harmful' }).click();
    await expectText(page.getByRole('status'), /Labelled prompt not harmful: overturns moderation/);
    await expectText(prompt, /not harmful.*overturns moderation/);
    await expectText(choice0, /harmful: illicit/);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'admin-ui-moderation-labels.png'), fullPage: true });

    // The admin API holds both labels as the UI showed them.
    const detail = adminCompletionDetailSchema.parse(await page.evaluate(async (id) => (await fetch(`/admin/api/completions/${id}`)).json(), record.id));
    expect(detail.moderation_labels).toHaveLength(2);
    const [choiceLabel, promptLabel] = detail.moderation_labels;
    expect(choiceLabel).toMatchObject({
      target: 'choice',
      choice_index: 0,
      prompt_index: null,
      direction: 'output',
      verdict: 'harmful',
      categories: ['illicit'],
      text: ANSWER_0,
      moderation_categories: [],
      overturns: true,
      actor: keyIdOf(ADMIN_KEY),
    });
    expect(promptLabel).toMatchObject({
      target: 'prompt',
      choice_index: null,
      prompt_index: 3,
      direction: 'input',
      verdict: 'not_harmful',
      categories: [],
      text: PROMPT,
      moderation_categories: ['harassment'],
      overturns: true,
    });

    // A `moderation` export made through the admin API carries both, as the classifier will learn them.
    const exported = await page.evaluate(async () => {
      const session = (await (await fetch('/admin/api/session')).json()) as { csrf_token: string };
      const made = await fetch('/admin/api/exports', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-csrf-token': session.csrf_token },
        body: JSON.stringify({ format: 'moderation' }),
      });
      const created = (await made.json()) as { download_url: string };
      const file = made.ok ? await (await fetch(created.download_url)).text() : '';
      return { session, status: made.status, created, file };
    });
    adminSessionSchema.parse(exported.session);
    expect(exported.status).toBe(200);
    expect(adminExportSchema.parse(exported.created)).toMatchObject({ format: 'moderation', row_count: 2 });
    const lines = exported.file
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => moderationExportLineSchema.parse(JSON.parse(l)));
    expect(lines).toEqual([
      { text: ANSWER_0, direction: 'output', categories: ['illicit'], source: 'reviewer', overturned: true, id: choiceLabel!.id },
      { text: PROMPT, direction: 'input', categories: [], source: 'reviewer', overturned: true, id: promptLabel!.id },
    ]);

    // The Models page lists the moderation role's versions and starts a retraining on the labels.
    await page.getByRole('link', { name: 'Models' }).click();
    await page.getByRole('table', { name: 'Policy versions' }).waitFor();
    await page.getByRole('group', { name: 'Role' }).getByRole('button', { name: 'Moderation' }).click();
    await page.getByRole('table', { name: 'Moderation versions' }).waitFor();
    await expectText(page.getByRole('table', { name: 'Moderation versions' }), /No moderation versions published yet/);
    expect(await page.getByRole('columnheader', { name: 'Eval gate' }).count()).toBe(0);
    await page.getByRole('button', { name: 'Retrain moderation now' }).click();
    await expectText(page.getByRole('status'), /Queued job job-moderation-1/);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'admin-ui-models-moderation.png') });
    await page.getByRole('button', { name: 'Retrain moderation now' }).click();
    await expectText(page.getByRole('status'), /Moderation training did not start: a moderation-train job is already queued or running/);
    expect(trainer.starts).toEqual([{ promote: 'if-better' }, { promote: 'if-better' }]);
    // A published moderation version with its held-out evidence: shown, promoted from the page, and the gateway's
    // own in-process moderator follows the promotion.
    const version = `mod-ui-${process.pid}`;
    await putCheckpoint(fixture.nc, { version, role: 'moderation', dir: path.join(repoRoot, 'libs/moderation/data/model') });
    await waitFor(async () => ((await findModelVersion(fixture.store.db, version)) ? true : undefined), 10_000, `model_versions row of ${version}`);
    const figures = (v: string, f1: number, reviewed: number) => ({ version: v, macro_f1: f1, recall: 0.5, hard_benign_fpr: 0.02, reviewed_recall: reviewed, reviewed_accuracy: reviewed });
    await recordVersionEval(fixture.store.db, version, { candidate: figures(version, 0.61, 0.9), active: figures('seed', 0.6, 0.1), pass: true, promoted: false, reasons: [] });
    await page.getByRole('group', { name: 'Role' }).getByRole('button', { name: 'Policy' }).click();
    await page.getByRole('group', { name: 'Role' }).getByRole('button', { name: 'Moderation' }).click();
    await expectText(page.getByRole('cell', { name: `Held-out comparison of ${version}` }), /passed macro F1 0\.600 → 0\.610 · reviewed 0\.10 → 0\.90/);
    await page.getByRole('button', { name: `Promote ${version}` }).click();
    await expectText(page.getByRole('status'), new RegExp(`Promoted ${version}`));
    expect((await readActive(fixture.nc, 'moderation'))?.version).toBe(version);
    await waitFor(
      async () => (new RegExp(`flywheel_moderation_active_version\\{version="${version}"`).test(await (await fetch(`${fixture.gatewayUrl}/metrics`)).text()) ? true : undefined),
      20_000,
      'the gateway serves the promoted moderation version',
    );

    // Back on the policy role, its versions table (and its eval gate column) returns.
    await page.getByRole('group', { name: 'Role' }).getByRole('button', { name: 'Policy' }).click();
    await page.getByRole('columnheader', { name: 'Eval gate' }).waitFor();

    // The Exports page offers the moderation format.
    await page.getByRole('link', { name: 'Exports' }).click();
    await expectText(page.getByRole('group', { name: 'Format' }), /MODERATION\s*\{"text", "direction", "categories", "source", "overturned"\}/);

    trainer.sub.unsubscribe();
    expect(pageErrors).toEqual([]);
    await context.close();
  });
});

async function expectText(locator: ReturnType<Page['locator']>, pattern: RegExp, timeoutMs = 10_000): Promise<void> {
  await waitFor(
    async () => (pattern.test((await locator.first().textContent({ timeout: 1000 })) ?? '') ? true : undefined),
    timeoutMs,
    `text ${pattern}`,
  ).catch(async (err) => {
    throw new Error(`${String(err)}; found: ${JSON.stringify(await locator.first().textContent({ timeout: 1000 }).catch(() => null))}`);
  });
}
