/**
 * The RL loop end to end, as `npm run demo:rlhf -- --json` runs it: private NATS and Redis, a throwaway Postgres
 * database, all five compiled services, the synthetic happy-ending preference set, one loop run (reward model →
 * PPO scored by the reward service → eval → promotion through the KV) and a chat completion served by the new
 * version through the gateway. Asserts the loop's targets (reward-model accuracy, reward gain of at least one
 * standard deviation, bounded KL, under ten minutes, the promoted version served) on the demo's own JSON, and that
 * the gate's other evidence is reported beside them: the gain at equal length, the independent reward model's gain
 * (no worse, as the gate's default bound asks of a promoted candidate), best-of-8 and KL to the base.
 */
import { run } from './support/processes';

jest.setTimeout(15 * 60_000);

describe('npm run demo:rlhf -- --json', () => {
  it('trains a reward model, improves the policy within the KL budget, promotes it and serves from it', async () => {
    const r = run(process.execPath, ['dist/scripts/demo/rlhf.demo.js', '--json', '--seed', '1'], process.env.FLYWHEEL_TEST_DATABASE_URL ? { FLYWHEEL_DEMO_DATABASE_URL: process.env.FLYWHEEL_TEST_DATABASE_URL } : {});
    const code = await r.exited;
    const out = r.output();
    if (code !== 0) throw new Error(`demo exited ${code}:\n${out.slice(-4000)}`);
    const line = out.split('\n').filter((l) => l.startsWith('{')).pop();
    const d = JSON.parse(line ?? '{}') as Record<string, any>;
    process.stderr.write(`demo:rlhf ${JSON.stringify({ ...d, served: undefined })}\n`);
    expect(d.rm_heldout_accuracy).toBeGreaterThanOrEqual(0.85);
    expect(d.reward_after - d.reward_before).toBeGreaterThanOrEqual(d.reward_std_before);
    expect(d.kl).toBeLessThanOrEqual(5);
    expect(d.minutes).toBeLessThan(10);
    expect(d.promoted_version).toMatch(/^loop-\d+-[0-9a-z]+-ppo$/);
    expect(d.served.version).toBe(d.promoted_version);
    expect(Number.isFinite(d.reward_gain_std_length_controlled)).toBe(true);
    expect(d.independent_rm).toMatchObject({ version: `rm-${d.loop_run}-rm-independent`, used: true });
    expect(d.independent_rm.heldout_accuracy).toBeGreaterThanOrEqual(0.85);
    expect(d.independent.gain_std).toBeGreaterThanOrEqual(0);
    expect(Number.isFinite(d.independent.gain_std_length_controlled)).toBe(true);
    expect(d.best_of_n).toMatchObject({ n: 8, kl_bound: expect.closeTo(Math.log(8) - 7 / 8, 12) });
    // The first loop run starts from the base: KL to the base is KL to the active version.
    expect(d.kl_base).toBe(d.kl);
    expect(typeof d.served.text).toBe('string');
  });
});
