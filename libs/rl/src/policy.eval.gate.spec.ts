/**
 * The eval gate's decision (gateVerdict): a candidate that fails exactly one bound is refused with a reason that
 * names that bound and its numbers; one inside every bound passes; a missing flag rate never counts against it.
 */
import { flagRateNoise, gateVerdict, type EvalGate, type EvalReport } from './policy.eval';

const gate: EvalGate = { minRewardGainStd: 0.5, maxKl: 5, maxKlBase: 12, maxFlagRateIncrease: 0.05 };
const passing: EvalReport = {
  prompts: 8,
  samples: 16,
  reward_before: 1,
  reward_std_before: 2,
  reward_after: 3,
  reward_std_after: 2,
  reward_gain_std: 1,
  kl: 2,
  kl_base: 6,
  flag_rate_before: 0.1,
  flag_rate_after: 0.12,
  response_length_before: 40,
  response_length_after: 42,
  examples: [],
};

describe('gateVerdict', () => {
  it('promotes a candidate inside every bound, and one exactly at each bound', () => {
    expect(gateVerdict(passing, gate)).toEqual({ promote: true, reasons: [] });
    const atBounds = { ...passing, reward_gain_std: gate.minRewardGainStd, kl: gate.maxKl, flag_rate_after: passing.flag_rate_before! + 0.04 };
    expect(gateVerdict(atBounds, gate).promote).toBe(true);
  });

  it.each([
    ['too little reward gain', { reward_gain_std: 0.2 }, /reward gain 0\.200 std < 0\.5/],
    ['too much KL from the active policy', { kl: 7.5 }, /KL 7\.500 nats > 5/],
    ['a flag rate that rises too much', { flag_rate_after: 0.3 }, /flag rate 0\.100 → 0\.300 rises more than 0\.05/],
    ['a reward gain that is not a number', { reward_gain_std: NaN }, /reward gain NaN std/],
    ['a KL that is not a number', { kl: NaN }, /KL NaN nats/],
    ['a chain of promotions drifted too far from the base', { kl_base: 12.5 }, /KL to the base 12\.500 nats > 12/],
  ])('refuses %s with one reason naming that bound', (_, change, reason) => {
    const verdict = gateVerdict({ ...passing, ...change }, gate);
    expect(verdict.promote).toBe(false);
    expect(verdict.reasons).toHaveLength(1);
    expect(verdict.reasons[0]).toMatch(reason);
  });

  it('allows the flag rate a rise within sampling noise, not a real one', () => {
    // 128 samples per model: one or two more flagged outputs out of ~10 is chance; a doubling is not.
    expect(flagRateNoise(0.07, 0.09, 128)).toBeCloseTo(1.645 * Math.sqrt((0.08 * 0.92 * 2) / 128), 12);
    expect(gateVerdict({ ...passing, flag_rate_before: 0.07, flag_rate_after: 0.1 }, { ...gate, maxFlagRateIncrease: 0.01 }).promote).toBe(true);
    expect(gateVerdict({ ...passing, flag_rate_before: 0.07, flag_rate_after: 0.2 }, { ...gate, maxFlagRateIncrease: 0.01 }).promote).toBe(false);
    expect(flagRateNoise(0, 0, 128)).toBe(0);
  });

  it('lists every bound a candidate fails', () => {
    const verdict = gateVerdict({ ...passing, reward_gain_std: -1, kl: 9, flag_rate_after: 0.9 }, gate);
    expect(verdict.promote).toBe(false);
    expect(verdict.reasons.map((r) => r.split(' ')[0])).toEqual(['reward', 'KL', 'flag']);
  });

  it('a base KL it could not measure, or no base bound, does not count against it', () => {
    expect(gateVerdict({ ...passing, kl_base: null }, gate).promote).toBe(true);
    expect(gateVerdict({ ...passing, kl_base: 50 }, { ...gate, maxKlBase: null }).promote).toBe(true);
  });

  it('does not hold an unknown flag rate (no moderation in the eval) against the candidate', () => {
    expect(gateVerdict({ ...passing, flag_rate_before: null, flag_rate_after: null }, gate).promote).toBe(true);
    expect(gateVerdict({ ...passing, flag_rate_before: 0.1, flag_rate_after: null }, gate).promote).toBe(true);
  });
});
