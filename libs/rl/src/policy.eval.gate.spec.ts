/**
 * The eval gate's decision (gateVerdict): a candidate that fails exactly one bound is refused with a reason that
 * names that bound and its numbers; one inside every bound passes; a missing flag rate or independent score never
 * counts against it; a chain of promotions each close to its predecessor is stopped by the bound on KL to the base.
 */
import { bestOfNYardstick, flagRateNoise, gateVerdict, lengthControlledGainStd, type EvalGate, type EvalReport } from './policy.eval';

const gate: EvalGate = { minRewardGainStd: 0.5, maxKl: 5, maxKlBase: 12, maxFlagRateIncrease: 0.05, minLengthControlledGainStd: 0.5, minIndependentGainStd: 0.3 };
const passing: EvalReport = {
  prompts: 8,
  samples: 16,
  reward_before: 1,
  reward_std_before: 2,
  reward_after: 3,
  reward_std_after: 2,
  reward_gain_std: 1,
  reward_gain_std_length_controlled: 0.9,
  best_of_n: { n: 16, kl_bound: Math.log(16) - 15 / 16, gain_std: 1.5 },
  independent: { reward_before: 0, reward_std_before: 1, reward_after: 0.8, gain_std: 0.8, gain_std_length_controlled: 0.7 },
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
    ['a gain that vanishes at equal length', { reward_gain_std_length_controlled: 0.1 }, /reward gain at equal length 0\.100 std < 0\.5/],
    ['a gain the independent reward model does not see', { independent: { ...passing.independent!, gain_std: -0.4 } }, /independent reward gain -0\.400 std < 0\.3/],
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

  it('does not hold an unmeasured independent gain against the candidate, and applies no evidence bound set to null', () => {
    expect(gateVerdict({ ...passing, independent: null }, gate).promote).toBe(true);
    const gamed = { ...passing, reward_gain_std_length_controlled: -1, independent: { ...passing.independent!, gain_std: -1 } };
    expect(gateVerdict(gamed, gate).reasons).toHaveLength(2);
    expect(gateVerdict(gamed, { ...gate, minLengthControlledGainStd: null, minIndependentGainStd: null }).promote).toBe(true);
    expect(gateVerdict(gamed, { minRewardGainStd: 0.5, maxKl: 5, maxFlagRateIncrease: 0.05 }).promote).toBe(true);
    // Not a number is never enough.
    expect(gateVerdict({ ...passing, independent: { ...passing.independent!, gain_std: NaN } }, gate).reasons).toEqual([expect.stringMatching(/^independent reward gain NaN std/)]);
  });

  it('stops a chain of promotions, each a small step from its predecessor, once it has drifted too far from the base', () => {
    // Five loop runs, each 2 nats from the version it replaces; the drift from the original base adds up.
    const chain = [2, 4.5, 7, 9.5, 12.5, 15].map((klBase) => ({ ...passing, kl: 2, kl_base: klBase }));
    const verdicts = chain.map((r) => gateVerdict(r, gate));
    expect(verdicts.map((v) => v.promote)).toEqual([true, true, true, true, false, false]);
    // Refused on the base bound alone: every step was inside maxKl.
    expect(verdicts[4].reasons).toEqual(['KL to the base 12.500 nats > 12']);
    // Without the base bound (maxKl against the predecessor only) the whole chain would have gone through.
    expect(chain.every((r) => gateVerdict(r, { ...gate, maxKlBase: null }).promote)).toBe(true);
  });

  it('does not hold an unknown flag rate (no moderation in the eval) against the candidate', () => {
    expect(gateVerdict({ ...passing, flag_rate_before: null, flag_rate_after: null }, gate).promote).toBe(true);
    expect(gateVerdict({ ...passing, flag_rate_before: 0.1, flag_rate_after: null }, gate).promote).toBe(true);
  });
});

describe('the yardsticks', () => {
  it('best-of-n: the mean over prompts of best minus mean, in std units, at KL <= log n - (n-1)/n', () => {
    // Two prompts of 4 samples: best - mean = 4 - 2.5 and 0 - (-1.5).
    const y = bestOfNYardstick([1, 2, 3, 4, -3, -2, -1, 0], 4, 2)!;
    expect(y.n).toBe(4);
    expect(y.kl_bound).toBeCloseTo(Math.log(4) - 0.75, 12);
    expect(y.gain_std).toBeCloseTo((1.5 + 1.5) / 2 / 2, 12);
    expect(bestOfNYardstick([1, 2, 3], 1, 1)).toBeNull();
  });

  it('length-controlled gain: a candidate that only got longer gains nothing at equal length', () => {
    // reward = 0.1 * length exactly, for both versions; the candidate's answers are 20 longer.
    const lengths = [10, 20, 30, 40, 50];
    const before = { lengths, scores: lengths.map((l) => 0.1 * l) };
    const after = { lengths: lengths.map((l) => l + 20), scores: lengths.map((l) => 0.1 * (l + 20)) };
    expect(lengthControlledGainStd(before, after, 1)).toBeCloseTo(0, 9);
    // A real gain of 0.5 on top of the length effect is recovered, in std units.
    const better = { lengths: after.lengths, scores: after.scores.map((r) => r + 0.5) };
    expect(lengthControlledGainStd(before, better, 0.25)).toBeCloseTo(2, 9);
    // No length variation at all: the plain gain.
    expect(lengthControlledGainStd({ lengths: [5, 5], scores: [1, 3] }, { lengths: [5, 5], scores: [4, 4] }, 1)).toBeCloseTo(2, 12);
  });

  it('refuses a candidate best-of-n dominates only when asked', () => {
    const dominated = { ...passing, kl: 2, reward_gain_std: 1, best_of_n: { n: 16, kl_bound: 1.83, gain_std: 1.5 } };
    expect(gateVerdict(dominated, gate).promote).toBe(true);
    const verdict = gateVerdict(dominated, { ...gate, refuseDominated: true });
    expect(verdict.reasons).toEqual([expect.stringMatching(/best-of-16 sampling gains 1\.500 std at KL ≤ 1\.830; the candidate gains 1\.000 at KL 2\.000/)]);
    // Cheaper in KL than best-of-n: not dominated, whatever its gain.
    expect(gateVerdict({ ...dominated, kl: 1 }, { ...gate, refuseDominated: true }).promote).toBe(true);
  });
});
