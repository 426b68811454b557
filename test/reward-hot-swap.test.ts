/**
 * Reward versions through the `models` KV, end to end: a private nats-server with JetStream, the compiled reward
 * service (`npm run build:ts` first) and two published reward versions: rm-v1 trained by the CLI on the synthetic
 * preference set (test/reward.support.ts), rm-v2 the same checkpoint with score.weight negated, so every score
 * flips sign and a reply's scores tell which version produced them. Promote, swap under load, refuse a tampered
 * and an unloadable version, roll back, boot on the KV entry.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { connect, type NatsConnection } from 'nats';
import { rewardInfoSchema, rewardScoreResponseSchema, SUBJECTS, type RewardPair, type RewardScoreResponse } from '@flywheel/contracts';
import { ensureJetStream, entryFor, findPublished, MeshClient, promote, promoteVersion, putCheckpoint, readActive, rollback } from '@flywheel/mesh';
import { loadCheckpoint, writeHfCheckpoint } from '@flywheel/model';
import { startPrivateNats, type PrivateNats } from './gateway.support';
import { syntheticPreferences, toJsonl } from './reward.support';
import { freePort, repoRoot, run, serviceEntry, stop, waitFor, type Running } from './support/processes';

jest.setTimeout(120_000);

const BASE_DIR = path.join(repoRoot, 'models', 'stories260K');
/** Requests of 64 pairs queued at once on one native thread (~1 s each): the swap lands while they wait. */
const BURST = 4;

describe('reward model versions: promote, hot swap, refuse, roll back', () => {
  const work = mkdtempSync(path.join(tmpdir(), 'flywheel-reward-hot-swap-'));
  const v1Dir = path.join(work, 'rm-v1');
  const v2Dir = path.join(work, 'rm-v2');
  let nats: PrivateNats;
  let nc: NatsConnection;
  let mesh: MeshClient;
  let reward: Running | undefined;
  let port: number;
  const held = syntheticPreferences(12, { unseen: true });
  const pairs: RewardPair[] = held.flatMap((p) => [
    { prompt: p.prompt, response: p.chosen[0].content },
    { prompt: p.prompt, response: p.rejected[0].content },
  ]);
  /** rm-v1's scores of `pairs`, read from the service once it serves rm-v1. */
  let v1Scores: number[] = [];

  const score = (ps: RewardPair[] = pairs) => mesh.request(SUBJECTS.reward.score, { pairs: ps }, rewardScoreResponseSchema, { timeoutMs: 30_000 });
  const info = () => mesh.request(SUBJECTS.reward.info, {}, rewardInfoSchema, { timeoutMs: 5000 });
  const metrics = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const swaps = async (outcome: 'ok' | 'failed') => Number((await metrics()).match(new RegExp(`^flywheel_reward_swaps_total\\{outcome="${outcome}"[^}]*\\} (\\d+)$`, 'm'))?.[1] ?? 0);
  const waitForVersion = (version: string) =>
    waitFor(async () => ((await info().catch(() => null))?.version === version ? true : undefined), 20_000, `reward serving ${version}`);
  /** Chosen beats rejected on unseen stories: the fraction of pairs where it does. */
  const wins = (scores: number[]) => held.filter((_, i) => scores[2 * i]! > scores[2 * i + 1]!).length / held.length;
  const expectScoredBy = (res: RewardScoreResponse, version: 'rm-v1' | 'rm-v2') => {
    expect(res).toMatchObject({ model: version, version });
    const sign = version === 'rm-v1' ? 1 : -1;
    res.scores.forEach((s, i) => expect(s).toBeCloseTo(sign * v1Scores[i % v1Scores.length]!, 4));
  };
  const startReward = async (env: Record<string, string> = {}) => {
    port = await freePort();
    const p = run(process.execPath, [serviceEntry('reward')], {
      NATS_URL: nats.url,
      FLYWHEEL_REWARD_PORT: String(port),
      FLYWHEEL_STATE_DIR: path.join(work, 'state'),
      FLYWHEEL_LOG_LEVEL: 'warn',
      FLYWHEEL_REWARD_THREADS: '1',
      ...env,
    });
    await waitFor(async () => ((await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null))?.status === 200 ? true : undefined), 30_000, 'reward ready');
    return p;
  };

  beforeAll(async () => {
    const data = path.join(work, 'prefs.jsonl');
    writeFileSync(data, toJsonl(syntheticPreferences(80)));
    const cli = path.join(repoRoot, 'dist', 'scripts', 'cli', 'cli.main.js');
    const args = ['train', 'reward', '--model', BASE_DIR, '--data', data, '--out', v1Dir, '--steps', '30', '--lr', '3e-3', '--heldout', '0.25', '--seed', '1', '--json'];
    await promisify(execFile)(process.execPath, [cli, ...args], { cwd: repoRoot });

    const v1 = await loadCheckpoint(v1Dir);
    const weights = new Map(v1.weights);
    weights.set('score.weight', Float32Array.from(weights.get('score.weight')!, (w) => -w));
    const baseConfig = JSON.parse(readFileSync(path.join(v1Dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    await writeHfCheckpoint(v2Dir, { spec: v1.spec, weights, scoreLabels: 1, baseConfig, tokenizerDir: v1Dir });

    nats = await startPrivateNats();
    nc = await connect({ servers: nats.url });
    mesh = new MeshClient(nc);
    await ensureJetStream(nc);
    await putCheckpoint(nc, { version: 'rm-v1', role: 'reward', dir: v1Dir });
    await putCheckpoint(nc, { version: 'rm-v2', role: 'reward', dir: v2Dir, parent: 'rm-v1' });
    // A causal LM published as a reward version: it fetches and verifies, but is no reward model.
    await putCheckpoint(nc, { version: 'rm-causal', role: 'reward', dir: BASE_DIR });
  });

  afterAll(async () => {
    await stop(reward);
    await nc?.drain();
    await nats?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('with nothing configured and nothing active, is ready and answers unavailable; a promotion makes it serve', async () => {
    reward = await startReward();
    expect(await info()).toMatchObject({ model: null, version: null, ready: false });
    await expect(score()).rejects.toMatchObject({ code: 'unavailable', message: 'no reward model configured' });

    await promoteVersion(nc, 'reward', 'rm-v1', 'test', 'first');
    await waitForVersion('rm-v1');
    const res = await score();
    expect(res).toMatchObject({ model: 'rm-v1', version: 'rm-v1' });
    expect(wins(res.scores)).toBeGreaterThanOrEqual(0.85);
    v1Scores = res.scores;
    expect(await info()).toMatchObject({ model: 'rm-v1', version: 'rm-v1', ready: true, contextLength: 512, hasChatTemplate: true });
  });

  it('swaps to rm-v2 under load: queued calls finish on rm-v1 and say so, new calls get rm-v2', async () => {
    const burstPairs = Array.from({ length: 64 }, (_, i) => pairs[i % pairs.length]!);
    const burst = Array.from({ length: BURST }, async () => {
      const res = await score(burstPairs);
      return { res, endedAt: Date.now() };
    });
    await promote(nc, 'reward', entryFor((await findPublished(nc, 'rm-v2'))!, 'test', 'under load'));
    await waitFor(async () => ((await info()).version === 'rm-v2' ? true : undefined), 10_000, 'reward serving rm-v2');
    const swappedAt = Date.now();
    const fresh = await score();
    const freshAt = Date.now();
    expectScoredBy(fresh, 'rm-v2');
    expect(wins(fresh.scores)).toBeLessThanOrEqual(0.15);

    const done = await Promise.all(burst);
    // Every reply names the version whose scores it carries (rm-v2 negates rm-v1's), none failed.
    for (const { res } of done) expectScoredBy(res, res.version === 'rm-v1' ? 'rm-v1' : 'rm-v2');
    const onV1 = done.filter((d) => d.res.version === 'rm-v1');
    expect(onV1.length).toBeGreaterThan(0);
    // Calls queued on rm-v1 were still scored by it after the swap (its scorer is freed only once they drained),
    // while the new call did not wait behind them.
    const lastOnV1 = Math.max(...onV1.map((d) => d.endedAt));
    expect(lastOnV1).toBeGreaterThan(swappedAt);
    expect(lastOnV1).toBeGreaterThan(freshAt);

    expect(await info()).toMatchObject({ model: 'rm-v2', version: 'rm-v2', ready: true });
    const text = await metrics();
    expect(text).toMatch(/^flywheel_reward_swaps_total\{outcome="ok"[^}]*\} 2$/m);
    expect(text).toMatch(/^flywheel_reward_active_version\{version="rm-v2"[^}]*\} 1$/m);
    expect(text).not.toMatch(/^flywheel_reward_active_version\{version="rm-v1"/m);
  });

  it('refuses a tampered checkpoint and one that is no reward model; rm-v2 keeps serving', async () => {
    const v2 = (await findPublished(nc, 'rm-v2'))!;
    await promote(nc, 'reward', { ...entryFor(v2, 'test', 'tampered'), version: 'rm-v2-bad', checkpoint: { ...v2.checkpoint, sha256: 'f'.repeat(64) } });
    await waitFor(async () => ((await swaps('failed')) === 1 ? true : undefined), 15_000, 'tampered version refused');
    expectScoredBy(await score(), 'rm-v2');

    // Back to rm-v2 in the KV: the replica already serves it, nothing is swapped.
    expect(await rollback(nc, 'reward', 'test')).toMatchObject({ version: 'rm-v2' });
    await promoteVersion(nc, 'reward', 'rm-causal', 'test', 'not a reward model');
    await waitFor(async () => ((await swaps('failed')) === 2 ? true : undefined), 15_000, 'causal LM refused');
    expect(await info()).toMatchObject({ version: 'rm-v2' });
    expectScoredBy(await score(), 'rm-v2');
    expect(await swaps('ok')).toBe(2);
    expect(await metrics()).toMatch(/^flywheel_reward_active_version\{version="rm-v2"[^}]*\} 1$/m);
  });

  it('rolls back to rm-v1 with KV writes alone', async () => {
    expect(await rollback(nc, 'reward', 'test')).toMatchObject({ version: 'rm-v2' });
    expect(await rollback(nc, 'reward', 'test')).toMatchObject({ version: 'rm-v1', action: 'rollback' });
    await waitForVersion('rm-v1');
    expectScoredBy(await score(), 'rm-v1');
    expect(await swaps('ok')).toBe(3);
  });

  it('a replica that boots while the KV names a version serves it, not FLYWHEEL_REWARD_MODEL', async () => {
    await stop(reward);
    reward = await startReward({ FLYWHEEL_REWARD_MODEL: v2Dir, FLYWHEEL_REWARD_VERSION: 'rm-local' });
    expect(await readActive(nc, 'reward')).toMatchObject({ version: 'rm-v1' });
    expect(await info()).toMatchObject({ model: 'rm-v1', version: 'rm-v1', ready: true });
    expectScoredBy(await score(), 'rm-v1');
    expect(await metrics()).toMatch(/^flywheel_reward_active_version\{version="rm-v1"[^}]*\} 1$/m);
  });
});
