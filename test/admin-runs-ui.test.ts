/**
 * The admin UI's Runs page in a real browser: Debian's chromium driven by playwright-core against the compiled
 * gateway on a private nats-server and a throwaway database on this machine's Postgres. A loop run with two
 * stages (reward-train, then ppo with a 20-step series and the candidate it registered) and an sft run are
 * seeded through the store functions the trainer calls; the list, the loop's page with its stages' curves
 * and the ppo page with its own are checked in the DOM, down to the SVG paths. The loop panel talks to a
 * stand-in trainer on trainer.loop that keeps its state: Pause, Resume, Start run now, then the trainer going
 * away shows inline. Needs /usr/bin/chromium and apps/admin-ui/dist (npm run build:admin-ui).
 */
import { existsSync } from 'node:fs';
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

/** A stand-in trainer loop in Nest's wire format that keeps its state between requests. */
function fakeTrainerLoop(connection: NatsConnection): { sub: Subscription; state: LoopStatus } {
  const codec = JSONCodec<unknown>();
  const state: LoopStatus = { paused: false, running: null, approvedSinceLastRun: 7, minNewApproved: 50, scheduleMs: 60_000, lastRun: null };
  const sub = connection.subscribe(LOOP_SUBJECT, {
    callback: (_err, msg) => {
      const packet = nestRequestPacketSchema.parse(codec.decode(msg.data));
      const { action } = loopControlRequestSchema.parse(packet.data);
      if (action === 'pause') state.paused = true;
      if (action === 'resume') state.paused = false;
      if (action === 'start' && !state.running) state.running = { runId: 'loop-manual-1', stage: 'reward-train', startedAt: new Date().toISOString() };
      msg.respond(codec.encode({ id: packet.id, response: state, isDisposed: true }));
    },
  });
  return { sub, state };
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
