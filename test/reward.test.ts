/**
 * The reward model end to end: `flywheel train reward --json` on a synthetic preference set (happy endings chosen
 * over sad endings of the same story, test/reward.support.ts) reaches a high held-out accuracy; the compiled reward
 * service, on a private nats-server, serves the written checkpoint and scores chosen above rejected on stories it
 * never saw; without a configured model it stays ready and answers `unavailable`; bad payloads get typed errors.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { connect, type NatsConnection } from 'nats';
import { rewardInfoSchema, rewardScoreResponseSchema, SUBJECTS } from '@flywheel/contracts';
import { MeshClient } from '@flywheel/mesh';
import { startPrivateNats, type PrivateNats } from './gateway.support';
import { syntheticPreferences, toJsonl } from './reward.support';
import { freePort, repoRoot, run, serviceEntry, stop, waitFor, type Running } from './support/processes';

jest.setTimeout(120_000);

describe('reward model', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'flywheel-reward-'));
  const outDir = path.join(dir, 'rm');
  let summary: { pairs: number; heldout_accuracy: number; loss_first: number; loss_last: number };
  let nats: PrivateNats;
  let nc: NatsConnection;
  let mesh: MeshClient;
  const services: Running[] = [];

  const startReward = async (env: Record<string, string>): Promise<number> => {
    const port = await freePort();
    const proc = run(process.execPath, [serviceEntry('reward')], { NATS_URL: nats.url, FLYWHEEL_REWARD_PORT: String(port), FLYWHEEL_LOG_LEVEL: 'warn', FLYWHEEL_REWARD_THREADS: '1', ...env });
    services.push(proc);
    await waitFor(async () => ((await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null))?.status === 200 ? true : undefined), 30_000, 'reward ready');
    return port;
  };

  beforeAll(async () => {
    const data = path.join(dir, 'prefs.jsonl');
    writeFileSync(data, toJsonl(syntheticPreferences(80)));
    const cli = path.join(repoRoot, 'dist', 'scripts', 'cli', 'cli.main.js');
    const args = ['train', 'reward', '--model', 'models/stories260K', '--data', data, '--out', outDir, '--steps', '30', '--lr', '3e-3', '--heldout', '0.25', '--seed', '1', '--json'];
    const { stdout } = await promisify(execFile)(process.execPath, [cli, ...args], { cwd: repoRoot });
    summary = JSON.parse(stdout);
    nats = await startPrivateNats();
    nc = await connect({ servers: nats.url });
    mesh = new MeshClient(nc);
  });

  afterAll(async () => {
    await Promise.all(services.map((s) => stop(s)));
    await nc?.drain();
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('trains on the preference set with held-out accuracy well above chance (CLI --json)', () => {
    expect(Object.keys(summary).sort()).toEqual(['heldout_accuracy', 'loss_first', 'loss_last', 'pairs']);
    expect(summary.pairs).toBe(80);
    expect(summary.loss_first).toBeCloseTo(Math.log(2), 5); // a zero head scores every side 0
    expect(summary.loss_last).toBeLessThan(0.2);
    expect(summary.heldout_accuracy).toBeGreaterThanOrEqual(0.85);
  });

  it('without a configured model stays ready and answers unavailable; bad payloads are typed errors', async () => {
    await startReward({ FLYWHEEL_INSTANCE_ID: 'reward-none' });
    const pairs = [{ prompt: 'Once upon a time', response: ' there was a dog.' }];
    await expect(mesh.request(SUBJECTS.reward.score, { pairs }, rewardScoreResponseSchema, { timeoutMs: 5000 })).rejects.toMatchObject({
      code: 'unavailable',
      message: 'no reward model configured',
    });
    await expect(mesh.request(SUBJECTS.reward.score, { pairs: [] }, rewardScoreResponseSchema, { timeoutMs: 5000 })).rejects.toMatchObject({ code: 'invalid_payload' });
    await expect(mesh.request(SUBJECTS.reward.score, { pairs: [{ prompt: 3 }] }, rewardScoreResponseSchema, { timeoutMs: 5000 })).rejects.toMatchObject({
      code: 'invalid_payload',
    });
    const info = await mesh.request(SUBJECTS.reward.info, {}, rewardInfoSchema, { timeoutMs: 5000 });
    expect(info).toMatchObject({ model: null, ready: false, instanceId: 'reward-none' });
    await Promise.all(services.splice(0).map((s) => stop(s)));
  });

  it('serves the trained checkpoint: chosen above rejected on unseen stories, with metrics', async () => {
    const port = await startReward({ FLYWHEEL_REWARD_MODEL: outDir, FLYWHEEL_REWARD_VERSION: 'rm-test' });
    const held = syntheticPreferences(12, { unseen: true });
    const pairs = held.flatMap((p) => [
      { prompt: p.prompt, response: p.chosen[0].content },
      { prompt: p.prompt, response: p.rejected[0].content },
    ]);
    const res = await mesh.request(SUBJECTS.reward.score, { pairs }, rewardScoreResponseSchema, { timeoutMs: 10_000 });
    expect(res).toMatchObject({ model: 'rm', version: 'rm-test' });
    expect(res.scores).toHaveLength(24);
    const wins = held.filter((_, i) => res.scores[2 * i] > res.scores[2 * i + 1]).length;
    expect(wins / held.length).toBeGreaterThanOrEqual(0.85);

    // A pair scores the same alone as in a padded batch (right padding, score at the last real token).
    const alone = await mesh.request(SUBJECTS.reward.score, { pairs: [pairs[1]] }, rewardScoreResponseSchema, { timeoutMs: 5000 });
    expect(alone.scores[0]).toBeCloseTo(res.scores[1], 4);
    const text = await mesh.request(SUBJECTS.reward.score, { pairs: [{ prompt: 'Once upon a time', response: ' they lived happily ever after.' }] }, rewardScoreResponseSchema, { timeoutMs: 5000 });
    expect(Number.isFinite(text.scores[0])).toBe(true);
    await expect(mesh.request(SUBJECTS.reward.score, { pairs: new Array(65).fill(pairs[0]) }, rewardScoreResponseSchema, { timeoutMs: 5000 })).rejects.toMatchObject({
      code: 'invalid_payload',
    });

    const info = await mesh.request(SUBJECTS.reward.info, {}, rewardInfoSchema, { timeoutMs: 5000 });
    expect(info).toMatchObject({ model: 'rm', version: 'rm-test', ready: true, contextLength: 512, hasChatTemplate: true });
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toMatch(/flywheel_reward_requests_total\{[^}]*outcome="ok"[^}]*\} 3/);
    expect(metrics).toMatch(/flywheel_reward_batch_size_count\{[^}]*\} 3/);
    expect(metrics).toMatch(/flywheel_reward_latency_seconds_count\{[^}]*\} 3/);
  });
});
