// Group-relative advantages against their definitions written the slow way, and the group policy loss's gradient
// against central differences of its own loss, in both aggregations, with the clip, the clamp and the k3 term.
import { xorshift32 as rng } from '@flywheel/kernels';
import { groupAdvantages, groupPolicyLoss, groupPreferencePairs, type GroupLossOptions } from './group.math';
import { meanStd } from './ppo.math';

describe('group-relative advantages', () => {
  const rewards = [1, 2, 3, 4, 5, 5, 5, 5, -1, 0, 0, 3];

  it('grpo: centred on the group mean, scaled by its std when asked; a tied group gets nothing', () => {
    const { advantages, flatGroups } = groupAdvantages(rewards, 4, 'grpo', true);
    expect(flatGroups).toEqual([false, true, false]);
    const { mean, std } = meanStd([1, 2, 3, 4]);
    expect(Array.from(advantages.slice(0, 4))).toEqual([1, 2, 3, 4].map((r) => expect.closeTo((r - mean) / (std + 1e-6), 12)));
    expect(Array.from(advantages.slice(4, 8))).toEqual([0, 0, 0, 0]);
    expect(Array.from(groupAdvantages(rewards, 4, 'grpo', false).advantages.slice(8))).toEqual([-1.5, -0.5, -0.5, 2.5]);
  });

  it('rloo: each sample against the mean of the others', () => {
    const { advantages } = groupAdvantages(rewards, 4, 'rloo', false);
    for (let g = 0; g < rewards.length; g += 4) {
      for (let k = 0; k < 4; k++) {
        const others = [0, 1, 2, 3].filter((j) => j !== k).map((j) => rewards[g + j]);
        const expected = rewards[g + k] - others.reduce((a, b) => a + b, 0) / 3;
        expect(advantages[g + k]).toBeCloseTo(expected, 12);
      }
    }
  });

  it('reinforce++: group-centred, then whitened over the batch', () => {
    const { advantages } = groupAdvantages(rewards, 4, 'reinforce++', false);
    const s = meanStd(advantages);
    expect(s.mean).toBeCloseTo(0, 12);
    expect(s.std).toBeCloseTo(1, 6);
  });

  it('rft: the best sample of each group gets 1 (the first of a tie at the top), the rest 0; a tied group nothing', () => {
    const { advantages, flatGroups } = groupAdvantages([1, 4, 2, 4, 5, 5, 5, 5, -1, 0, 0, 3], 4, 'rft', false);
    expect(flatGroups).toEqual([false, true, false]);
    expect(Array.from(advantages)).toEqual([0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  });

  it('online-dpo: each untied group gives (best, worst), the first of a tie at either end', () => {
    const r = [1, 4, 2, 4, 5, 5, 5, 5, -1, 0, 0, 3];
    expect(groupPreferencePairs(r, 4)).toEqual([
      { chosen: 1, rejected: 0 },
      { chosen: 11, rejected: 8 },
    ]);
    expect(groupPreferencePairs([2, 2, 1, 3], 2)).toEqual([{ chosen: 3, rejected: 2 }]);
    expect(() => groupPreferencePairs([1, 2, 3], 2)).toThrow(/groups of 2/);
  });

  it('refuses rewards that do not split into groups', () => {
    expect(() => groupAdvantages([1, 2, 3], 2, 'grpo', true)).toThrow(/groups of 2/);
  });
});

describe('group policy loss', () => {
  const offsets = [0, 3, 3, 7, 12]; // sequences of 3, 0, 4 and 5 tokens
  const next = rng(11);
  const logpOld = Array.from({ length: 12 }, () => -0.5 - 2 * next());
  const logpRef = logpOld.map((v) => v + 0.6 * (next() - 0.5));
  const adv = [1.3, 0.7, -0.9, 0.4];
  // Log-ratios from −0.6 to 0.6: some tokens inside the clip range, some beyond it on either side.
  const logp = logpOld.map((v, i) => v + (i % 6) * 0.24 - 0.6);

  it.each([
    ['token', 0],
    ['token', 0.1],
    ['sequence', 0.1],
    ['sequence', 0],
  ] as const)('%s aggregation, klCoef %s: the gradient matches central differences', (aggregation, klCoef) => {
    const o: GroupLossOptions = { clipLow: 0.2, clipHigh: 0.28, logRatioClamp: 10, klCoef, aggregation };
    const { dlogp, loss, policyLoss, kl } = groupPolicyLoss(logp, logpOld, logpRef, adv, offsets, o);
    expect(loss).toBeCloseTo(policyLoss + klCoef * kl, 12);
    const h = 1e-6;
    for (let i = 0; i < logp.length; i++) {
      const up = [...logp];
      const down = [...logp];
      up[i] += h;
      down[i] -= h;
      const fd = (groupPolicyLoss(up, logpOld, logpRef, adv, offsets, o).loss - groupPolicyLoss(down, logpOld, logpRef, adv, offsets, o).loss) / (2 * h);
      expect([i, dlogp[i]]).toEqual([i, expect.closeTo(fd, 6)]);
    }
  });

  it('weighs tokens equally (token) or sequences equally (sequence)', () => {
    const same = logpOld;
    const base = { clipLow: 0.2, clipHigh: 0.2, logRatioClamp: 10, klCoef: 0 };
    // At ρ = 1 the surrogate is −A per token: the token mean vs the mean of sequence means.
    const token = groupPolicyLoss(same, logpOld, logpOld, adv, offsets, { ...base, aggregation: 'token' });
    expect(token.policyLoss).toBeCloseTo(-(1.3 * 3 + -0.9 * 4 + 0.4 * 5) / 12, 12);
    const seq = groupPolicyLoss(same, logpOld, logpOld, adv, offsets, { ...base, aggregation: 'sequence' });
    expect(seq.policyLoss).toBeCloseTo(-(1.3 + -0.9 + 0.4) / 3, 12);
    expect(token.kl).toBeCloseTo(0, 12);
  });

  it('clips the ratio asymmetrically: clip-higher lets a good token rise further', () => {
    const up = logpOld.map((v) => v + Math.log(1.25));
    const sym = groupPolicyLoss(up, logpOld, logpOld, [1, 1, 1, 1], offsets, { clipLow: 0.2, clipHigh: 0.2, logRatioClamp: 10, klCoef: 0, aggregation: 'token' });
    const high = groupPolicyLoss(up, logpOld, logpOld, [1, 1, 1, 1], offsets, { clipLow: 0.2, clipHigh: 0.28, logRatioClamp: 10, klCoef: 0, aggregation: 'token' });
    expect(sym.clipFraction).toBe(1);
    expect(Array.from(sym.dlogp).every((g) => g === 0)).toBe(true);
    expect(high.clipFraction).toBe(0);
    expect(Array.from(high.dlogp).every((g) => g < 0)).toBe(true);
  });
});
