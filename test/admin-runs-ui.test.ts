/**
 * The admin UI's Runs page in a real browser: Debian's chromium driven by playwright-core against the compiled
 * gateway on a private nats-server and a throwaway database on this machine's Postgres. A loop run with two
 * stages (reward-train, then ppo with a 20-step series and the candidate it registered) and an sft run are
 * seeded through the store functions the trainer calls; the list, the loop's page with its stages' curves
 * and the ppo page with its own are checked in the DOM, down to the SVG paths. The loop panel talks to a
 * stand-in trainer on trainer.loop that keeps its state: Pause, Resume, Start run now, then the trainer going
 * away shows inline. Then the page telling the truth, without reloads: a loop whose ppo stage failed shows the
 * stage and the error in the list, on its page and in its stages; a running loop's stage and step (from the
 * stand-in trainer's status) move in the panel, the list and the run's page as they change; a start the trainer
 * refuses shows its reason under the button. With FLYWHEEL_UPDATE_SCREENSHOTS=1 the loop page with its curves
 * is saved as docs/screenshots/run-detail.png. Needs /usr/bin/chromium and apps/admin-ui/dist (npm run build:admin-ui).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { JSONCodec, type NatsConnection, type Subscription } from 'nats';
import { chromium, type Browser, type Page } from 'playwright-core';
import { LOOP_SUBJECT, loopControlRequestSchema, nestRequestPacketSchema, newTimeOrderedId, type LoopStatus } from '@flywheel/contracts';
import {
  appendTrainingMetrics,
  createTrainingRun,
  registerCandidateVersion,
  updateTrainingRun,
  type Store,
} from '@flywheel/store';
import { repoRoot, waitFor } from './support/processes';
import { startAdminGateway, type AdminGateway } from './support/admin-gateway';

jest.setTimeout(180_000);

const CHROMIUM = '/usr/bin/chromium';
const USER_KEY = 'sk-flywheel-runs-ui-user';
const ADMIN_KEY = 'sk-flywheel-runs-ui-admin';
const SCREENSHOTS = process.env.FLYWHEEL_UI_SCREENSHOTS ?? tmpdir();

let fixture: AdminGateway;
let gatewayUrl: string;
let nc: NatsConnection;
let store: Store;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} missing: apt-get install -y chromium`);
  const uiDir = path.join(repoRoot, 'apps', 'admin-ui', 'dist');
  if (!existsSync(path.join(uiDir, 'index.html'))) throw new Error('apps/admin-ui/dist missing: npm run build:admin-ui');
  fixture = await startAdminGateway({ userKey: USER_KEY, adminKey: ADMIN_KEY, name: 'runs-ui', uiDir: () => uiDir });
  ({ gatewayUrl, nc, store } = fixture);
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

/**
 * A stand-in trainer loop in Nest's wire format that keeps its state between requests; a start is refused with
 * `refusal` when one is set.
 */
function fakeTrainerLoop(connection: NatsConnection): { sub: Subscription; state: LoopStatus; refusal: { value: LoopStatus['refused'] } } {
  const codec = JSONCodec<unknown>();
  const state: LoopStatus = { paused: false, running: null, approvedSinceLastRun: 7, minNewApproved: 50, scheduleMs: 60_000, lastRun: null };
  const refusal: { value: LoopStatus['refused'] } = { value: undefined };
  const sub = connection.subscribe(LOOP_SUBJECT, {
    callback: (_err, msg) => {
      const packet = nestRequestPacketSchema.parse(codec.decode(msg.data));
      const { action } = loopControlRequestSchema.parse(packet.data);
      if (action === 'pause') state.paused = true;
      if (action === 'resume') state.paused = false;
      const refused = action === 'start' ? refusal.value : undefined;
      if (action === 'start' && !refused && !state.running) state.running = { runId: 'loop-manual-1', stage: 'reward-train', startedAt: new Date().toISOString() };
      msg.respond(codec.encode({ id: packet.id, response: refused ? { ...state, message: refused.message, refused } : state, isDisposed: true }));
    },
  });
  return { sub, state, refusal };
}

/** A PPO series as the trainer logs it: reward rising, KL growing, every timing. */
function ppoPoint(step: number): Record<string, number> {
  return {
    reward_mean: -0.5 + step * 0.06,
    reward_std: 0.3 - step * 0.005,
    kl: 0.002 * step,
    approx_kl: 0.0015 * step,
    kl_coef: 0.05,
    clip_fraction: 0.1 + 0.01 * Math.sin(step),
    entropy: 2.4 - step * 0.02,
    policy_loss: -0.01 * step,
    value_loss: 0.5 / (step + 1),
    response_length: 20 + step,
    time_rollout_s: 1.2,
    time_score_s: 0.3,
    time_update_s: 0.8,
    time_sync_s: 0.1,
  };
}

describe('admin Runs page in chromium', () => {
  it('lists runs, draws a loop’s stage curves and a ppo run’s own, and pauses, resumes and starts the loop', async () => {
    const loop = `loop-${newTimeOrderedId()}`;
    const rm = `rm-${newTimeOrderedId()}`;
    const ppo = `ppo-${newTimeOrderedId()}`;
    const sft = `sft-${newTimeOrderedId()}`;
    await createTrainingRun(store.db, { id: sft, kind: 'sft', status: 'running' });
    await updateTrainingRun(store.db, sft, { status: 'succeeded', metrics: { train_loss_last: 1.25, tokens_per_s: 900 } });
    await createTrainingRun(store.db, { id: loop, kind: 'loop', status: 'running', stage: 'reward-train', baseVersion: 'base' });
    await createTrainingRun(store.db, { id: rm, kind: 'reward-train', status: 'running', parentRunId: loop });
    await appendTrainingMetrics(store.db, rm, [0, 1, 2, 3].map((step) => ({ step, metrics: { loss: 0.69 - 0.1 * step, accuracy: 0.5 + 0.1 * step } })));
    await updateTrainingRun(store.db, rm, { status: 'succeeded', metrics: { heldout_accuracy: 0.8 } });
    await updateTrainingRun(store.db, loop, { stage: 'ppo' });
    await createTrainingRun(store.db, { id: ppo, kind: 'ppo', status: 'running', parentRunId: loop, baseVersion: 'base' });
    await appendTrainingMetrics(store.db, ppo, Array.from({ length: 20 }, (_, step) => ({ step, metrics: ppoPoint(step) })));
    await registerCandidateVersion(store.db, {
      versionId: `policy-${ppo}`,
      role: 'policy',
      trainingRun: { id: ppo, kind: 'ppo', baseVersion: 'base', exportId: null, config: { steps: 20 }, startedAt: new Date(), finishedAt: new Date() },
      checkpoint: '/tmp/ckpt',
      metrics: { reward_mean: 0.64, kl: 0.038 },
    });
    await updateTrainingRun(store.db, loop, { stage: 'eval' });

    const trainer = fakeTrainerLoop(nc);
    await nc.flush();
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(String(err)));
    try {
      await page.goto(`${gatewayUrl}/admin/`);
      await page.getByLabel('Admin key').fill(ADMIN_KEY);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Runs' }).click();

      // The list: top-level runs only, newest first, with kind, status and key metrics.
      const table = page.getByRole('table', { name: 'Training runs' });
      await table.locator(`tr[data-id="${loop}"]`).waitFor();
      expect(await attributes(table.locator('tbody tr[data-id]'), 'data-id')).toEqual([loop, sft]);
      await expectText(table.locator(`tr[data-id="${loop}"]`), /loop.*running/s);
      await expectText(table.locator(`tr[data-id="${loop}"]`), /eval/);
      await expectText(table.locator(`tr[data-id="${sft}"]`), /succeeded.*train_loss_last 1\.25/s);

      // The loop panel: state from the trainer.
      const panel = page.getByRole('region', { name: 'Training loop' });
      await expectText(panel.getByTestId('loop-state'), /^Active$/);
      await expectText(panel, /7 \/ 50/);
      await expectText(panel, /every 60 s/);

      // The loop's page: its stages, each stage's curves, the version the ppo stage produced.
      await table.locator(`tr[data-id="${loop}"] a`).first().click();
      await page.getByRole('heading', { name: loop }).waitFor();
      const stages = page.getByRole('table', { name: 'Stage runs' });
      expect(await attributes(stages.locator('tbody tr[data-id]'), 'data-id')).toEqual([rm, ppo]);
      const ppoCurves = page.getByRole('region', { name: 'Curves of ppo stage' });
      await expectCurves(ppoCurves.getByRole('figure', { name: 'Reward (mean ± std)' }), 1);
      await expectCurves(ppoCurves.getByRole('figure', { name: 'KL' }), 3);
      await expectCurves(page.getByRole('region', { name: 'Curves of reward-train stage' }).getByRole('figure', { name: 'Loss' }), 1);
      const versions = page.getByRole('table', { name: 'Versions produced' });
      await expectText(versions.locator(`tr[data-version="policy-${ppo}"]`), /policy.*candidate/s);
      expect(await versions.getByRole('link', { name: /Models/ }).getAttribute('href')).toBe('#/models');
      await page.screenshot({ path: path.join(SCREENSHOTS, 'admin-ui-run-loop.png'), fullPage: true });
      // The README's picture of the Runs pages (a loop with its stages and their curves), on request only, so a
      // test run leaves the working tree as it was.
      if (process.env.FLYWHEEL_UPDATE_SCREENSHOTS === '1') {
        mkdirSync(path.join(repoRoot, 'docs', 'screenshots'), { recursive: true });
        await page.screenshot({ path: path.join(repoRoot, 'docs', 'screenshots', 'run-detail.png'), fullPage: true });
      }

      // The ppo stage's own page: one chart per family, the rest on their own, timings stacked.
      await stages.locator(`tr[data-id="${ppo}"] a`).first().click();
      await page.getByRole('heading', { name: ppo }).waitFor();
      const curves = page.getByRole('region', { name: 'Curves', exact: true });
      await expectCurves(curves.getByRole('figure', { name: 'Reward (mean ± std)' }), 1);
      await expectCurves(curves.getByRole('figure', { name: 'KL' }), 3);
      await expectCurves(curves.getByRole('figure', { name: 'Loss' }), 2);
      const titles = await curves.locator('figure figcaption').allTextContents();
      expect(titles).toEqual(['Reward (mean ± std)', 'KL', 'Clip fraction', 'Entropy', 'Loss', 'Response length', 'Time per step (s)']);
      expect(await curves.getByRole('figure', { name: 'Time per step (s)' }).locator('.recharts-area-area').count()).toBe(4);
      await page.screenshot({ path: path.join(SCREENSHOTS, 'admin-ui-run-ppo.png'), fullPage: true });
      await page.getByRole('link', { name: '← Loop' }).click();
      await page.getByRole('heading', { name: loop }).waitFor();

      // Pause, resume and start through the panel; the stand-in trainer keeps the state.
      await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Runs' }).click();
      await page.getByRole('button', { name: 'Pause' }).click();
      await expectText(panel.getByTestId('loop-state'), /^Paused$/);
      expect(trainer.state.paused).toBe(true);
      await page.getByRole('button', { name: 'Resume' }).waitFor();
      await page.getByRole('button', { name: 'Resume' }).click();
      await expectText(panel.getByTestId('loop-state'), /^Active$/);
      expect(trainer.state.paused).toBe(false);
      await page.getByRole('button', { name: 'Start run now' }).click();
      await expectText(panel.getByTestId('loop-running'), /loop-manual-1.*stage reward-train/s);
      expect(await page.getByRole('button', { name: 'Start run now' }).isDisabled()).toBe(true);
      await page.screenshot({ path: path.join(SCREENSHOTS, 'admin-ui-runs.png'), fullPage: true });

      // The trainer goes away: the next poll says so inline and the buttons wait.
      trainer.sub.unsubscribe();
      await nc.flush();
      await expectText(panel.getByRole('alert'), /trainer is not answering/, 15_000);
      expect(await page.getByRole('button', { name: 'Pause' }).isDisabled()).toBe(true);

      expect(pageErrors).toEqual([]);
    } finally {
      trainer.sub.unsubscribe();
      await context.close();
    }
  });
  it('says why a start did nothing, shows a failed stage with its error, and follows a running loop without a reload', async () => {
    // A loop whose ppo stage failed, as the trainer leaves it: both runs failed with the stage's error.
    const failedLoop = `loop-${newTimeOrderedId()}`;
    const failedRm = `rm-${newTimeOrderedId()}`;
    const failedPpo = `ppo-${newTimeOrderedId()}`;
    const why = 'the reward service did not serve rm-7 within 120 s';
    await createTrainingRun(store.db, { id: failedLoop, kind: 'loop', status: 'running', stage: 'reward-train' });
    await createTrainingRun(store.db, { id: failedRm, kind: 'reward-train', status: 'running', parentRunId: failedLoop, stage: 'reward-train' });
    await updateTrainingRun(store.db, failedRm, { status: 'succeeded', metrics: { heldout_accuracy: 0.9 } });
    await updateTrainingRun(store.db, failedLoop, { stage: 'ppo' });
    await createTrainingRun(store.db, { id: failedPpo, kind: 'ppo', status: 'running', parentRunId: failedLoop });
    await updateTrainingRun(store.db, failedPpo, { status: 'failed', error: why });
    await updateTrainingRun(store.db, failedLoop, { status: 'failed', error: why });
    // A loop in its reward-train stage, step 3 of 10 as far as the trainer says.
    const liveLoop = `loop-${newTimeOrderedId()}`;
    const liveRm = `rm-${newTimeOrderedId()}`;
    const livePpo = `ppo-${newTimeOrderedId()}`;
    await createTrainingRun(store.db, { id: liveLoop, kind: 'loop', status: 'running', stage: 'reward-train' });
    await createTrainingRun(store.db, { id: liveRm, kind: 'reward-train', status: 'running', parentRunId: liveLoop, stage: 'reward-train' });

    const trainer = fakeTrainerLoop(nc);
    trainer.state.running = { runId: liveLoop, stage: 'reward-train', startedAt: new Date().toISOString(), progress: { step: 3, steps: 10 } };
    await nc.flush();
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(String(err)));
    let loads = 0;
    page.on('load', () => loads++);
    try {
      await page.goto(`${gatewayUrl}/admin/`);
      await page.getByLabel('Admin key').fill(ADMIN_KEY);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Runs' }).click();
      const panel = page.getByRole('region', { name: 'Training loop' });
      const table = page.getByRole('table', { name: 'Training runs' });

      // The failed loop: its stage and the error, in the list.
      await expectText(table.locator(`tr[data-id="${failedLoop}"]`).getByTestId('run-error'), new RegExp(`^Failed at stage ppo: ${why}$`));

      // The running loop: stage and step in the panel and on its row, moving as the trainer reports.
      await expectText(panel.getByTestId('loop-running'), /stage reward-train.*reward-train step 3 \/ 10 · 30%/s);
      const bar = panel.getByRole('progressbar', { name: 'reward-train progress' });
      expect([await bar.getAttribute('value'), await bar.getAttribute('max')]).toEqual(['3', '10']);
      await expectText(panel.locator('.stage-track [aria-current="step"]'), /^reward-train$/);
      await expectText(table.locator(`tr[data-id="${liveLoop}"]`).getByTestId('stage-progress-text'), /reward-train step 3 \/ 10/);
      expect(await page.getByRole('button', { name: 'Start run now' }).isDisabled()).toBe(true);
      trainer.state.running.progress = { step: 7, steps: 10 };
      await expectText(panel.getByTestId('stage-progress-text'), /reward-train step 7 \/ 10 · 70%/);
      await expectText(table.locator(`tr[data-id="${liveLoop}"]`).getByTestId('stage-progress-text'), /step 7 \/ 10/);

      // The loop moves on to ppo: the list follows the store, the panel the trainer.
      await updateTrainingRun(store.db, liveRm, { status: 'succeeded' });
      await updateTrainingRun(store.db, liveLoop, { stage: 'ppo' });
      await createTrainingRun(store.db, { id: livePpo, kind: 'ppo', status: 'running', parentRunId: liveLoop });
      trainer.state.running = { ...trainer.state.running, stage: 'ppo', progress: { step: 1, steps: 20 } };
      await expectText(table.locator(`tr[data-id="${liveLoop}"]`), /· ppo.*ppo step 1 \/ 20/s);
      await expectText(panel.locator('.stage-track [aria-current="step"]'), /^ppo$/);

      // Its page: the progress, and the ppo stage's row with its bar, moving without a reload.
      await table.locator(`tr[data-id="${liveLoop}"] a`).first().click();
      await page.getByRole('heading', { name: liveLoop }).waitFor();
      const progress = page.getByRole('region', { name: 'Progress' });
      await expectText(progress.getByTestId('stage-progress-text'), /ppo step 1 \/ 20 · 5%/);
      const stages = page.getByRole('table', { name: 'Stage runs' });
      await expectText(stages.locator(`tr[data-id="${livePpo}"]`).getByTestId('stage-progress-text'), /step 1 \/ 20/);
      trainer.state.running.progress = { step: 5, steps: 20 };
      await expectText(progress.getByTestId('stage-progress-text'), /ppo step 5 \/ 20 · 25%/);
      await expectText(stages.locator(`tr[data-id="${livePpo}"]`).getByTestId('stage-progress-text'), /step 5 \/ 20/);
      await page.screenshot({ path: path.join(SCREENSHOTS, 'admin-ui-run-progress.png'), fullPage: true });

      // The failed loop's page: the stage and error up top, and on the failed stage's row.
      await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Runs' }).click();
      await table.locator(`tr[data-id="${failedLoop}"] a`).first().click();
      await page.getByRole('heading', { name: failedLoop }).waitFor();
      await expectText(page.getByRole('alert').filter({ hasText: why }), new RegExp(`^Failed at stage ppo: ${why}$`));
      const failedStages = page.getByRole('table', { name: 'Stage runs' });
      await expectText(failedStages.locator(`tr[data-id="${failedPpo}"]`).getByTestId('run-error'), new RegExp(`^Failed: ${why}$`));
      expect(await failedStages.locator(`tr[data-id="${failedRm}"]`).getByTestId('run-error').count()).toBe(0);
      await page.screenshot({ path: path.join(SCREENSHOTS, 'admin-ui-run-failed.png'), fullPage: true });

      // The live run ends; the next start is refused: the reason shows under the button, and stays.
      await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name: 'Runs' }).click();
      await updateTrainingRun(store.db, livePpo, { status: 'succeeded' });
      await updateTrainingRun(store.db, liveLoop, { status: 'succeeded', stage: 'done' });
      trainer.state.running = null;
      trainer.state.lastRun = { runId: liveLoop, status: 'succeeded', finishedAt: new Date().toISOString() };
      const tooFew = 'too few approved preference pairs to train on: 1 approved preference pair on 1 distinct prompt';
      trainer.refusal.value = { code: 'no_training_data', message: tooFew };
      await expectText(table.locator(`tr[data-id="${liveLoop}"]`), /succeeded/);
      expect(await table.locator(`tr[data-id="${liveLoop}"]`).getByTestId('stage-progress').count()).toBe(0);
      await expectText(panel.getByTestId('loop-running'), /idle/);
      const startButton = page.getByRole('button', { name: 'Start run now' });
      await waitFor(async () => ((await startButton.isEnabled()) ? true : undefined), 10_000, 'Start run now enabled');
      await startButton.click();
      const refused = panel.getByRole('alert').filter({ hasText: 'did nothing' });
      await expectText(refused, new RegExp(`^Start run now did nothing: The loop did not start: ${tooFew}\\.$`));
      expect(await refused.isVisible()).toBe(true);
      // Right under the button, not in a toast somewhere else.
      const [buttonBox, messageBox] = [await startButton.boundingBox(), await refused.boundingBox()];
      expect(messageBox && buttonBox && messageBox.y - (buttonBox.y + buttonBox.height)).toBeLessThan(40);
      await new Promise((r) => setTimeout(r, 5_500)); // a poll later it is still there
      expect(await refused.isVisible()).toBe(true);

      // The store gone: the status says so, and so does the refused start.
      trainer.state.message = 'store unavailable: connect ECONNREFUSED 127.0.0.1:5432';
      trainer.refusal.value = { code: 'store_unavailable', message: 'cannot export the approved pairs: store unavailable: connect ECONNREFUSED 127.0.0.1:5432' };
      await expectText(panel.getByTestId('loop-message'), /^store unavailable: connect ECONNREFUSED/);
      await startButton.click();
      await expectText(panel.getByTestId('loop-action-message'), /^Start run now did nothing: The loop did not start: cannot export the approved pairs: store unavailable/);
      await page.screenshot({ path: path.join(SCREENSHOTS, 'admin-ui-runs-refused.png'), fullPage: true });

      expect(loads).toBe(1);
      expect(pageErrors).toEqual([]);
    } finally {
      trainer.sub.unsubscribe();
      await context.close();
    }
  });
});

/** The figure draws `lines` curves, each an SVG path with real segments. */
async function expectCurves(figure: ReturnType<Page['locator']>, lines: number): Promise<void> {
  await figure.waitFor();
  await waitFor(
    async () => {
      const ds = await attributes(figure.locator('path.recharts-line-curve'), 'd');
      return ds.length === lines && ds.every((d) => (d?.match(/L/g) ?? []).length >= 3) ? true : undefined;
    },
    10_000,
    `${lines} curves drawn`,
  );
}

async function attributes(locator: ReturnType<Page['locator']>, name: string): Promise<(string | null)[]> {
  return Promise.all((await locator.all()).map((l) => l.getAttribute(name)));
}

async function expectText(locator: ReturnType<Page['locator']>, pattern: RegExp, timeoutMs = 10_000): Promise<void> {
  await waitFor(
    async () => (pattern.test((await locator.first().textContent({ timeout: 1000 })) ?? '') ? true : undefined),
    timeoutMs,
    `text ${pattern}`,
  );
}
