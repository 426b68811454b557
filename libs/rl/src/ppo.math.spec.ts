// PPO arithmetic against definitions written the slow way (GAE as an explicit discounted sum of TD errors) and
// every gradient against central differences of its own loss.
import { xorshift32 as rng } from '@flywheel/kernels';
import { clippedPolicyLoss, clippedValueLoss, gae, k3KlLoss, KlController, klShapedRewards, meanStd, sequenceKl, whiten } from './ppo.math';

describe('PPO arithmetic', () => {
  const offsets = [0, 3, 3, 7]; // sequences of 3, 0 and 4 actions

  it('shapes rewards: -coef * (logp_old - logp_ref) per action, the score on each last action', () => {
    const old = [-1, -2, -0.5, -1, -1, -1, -3];
    const ref = [-1.5, -2, -1, -1, -0.5, -1, -2];
    const r = klShapedRewards([2, 9, -1], old, ref, offsets, 0.1);
    expect(Array.from(r)).toEqual([-0.05, -0, -0.05 + 2, -0, 0.05, -0, 0.1 - 1].map((x) => expect.closeTo(x, 12)));
    expect(Array.from(sequenceKl(old, ref, offsets))).toEqual([1, 0, expect.closeTo(-1.5, 12)]);
  });

  it('GAE equals the discounted sum of TD errors, per sequence, with V = 0 after the last action', () => {
    const next = rng(3);
    const rewards = Array.from({ length: 7 }, () => next() - 0.5);
    const values = Array.from({ length: 7 }, () => next() - 0.5);
    for (const [gamma, lambda] of [[1, 0.95], [0.9, 0.8], [1, 1]]) {
      const { advantages, returns } = gae(rewards, values, offsets, gamma, lambda);
      for (let s = 0; s + 1 < offsets.length; s++) {
        const [a, b] = [offsets[s], offsets[s + 1]];
        for (let t = a; t < b; t++) {
          let expected = 0;
          for (let k = t; k < b; k++) {
            const vNext = k + 1 < b ? values[k + 1] : 0;
            expected += (gamma * lambda) ** (k - t) * (rewards[k] + gamma * vNext - values[k]);
          }
          expect(advantages[t]).toBeCloseTo(expected, 12);
          expect(returns[t]).toBeCloseTo(expected + values[t], 12);
        }
      }
    }
  });

  it('whitens to mean 0 and std 1', () => {
    const w = whiten([1, 2, 3, 4, 10]);
    const { mean, std } = meanStd(w);
    expect(mean).toBeCloseTo(0, 12);
    expect(std).toBeCloseTo(1, 6);
  });

  function numericGrad(f: (x: number[]) => number, x: number[], i: number, h = 1e-6): number {
    const p = [...x];
    p[i] += h;
    const m = [...x];
    m[i] -= h;
    return (f(p) - f(m)) / (2 * h);
  }

  it('clipped policy loss: value by definition, gradient by central differences, clip fraction, approx KL', () => {
    const next = rng(7);
    const n = 40;
    const old = Array.from({ length: n }, () => -1 - next());
    // Ratios spread over [0.5, 1.6] so both clip sides and the interior occur.
    const logp = old.map((o) => o + Math.log(0.5 + 1.1 * next()));
    const adv = Array.from({ length: n }, () => next() * 2 - 1);
    const clip = 0.2;
    const r = clippedPolicyLoss(logp, old, adv, clip, 20);
    let expected = 0;
    let clipped = 0;
    for (let i = 0; i < n; i++) {
      const ratio = Math.exp(logp[i] - old[i]);
      expected += Math.max(-adv[i] * ratio, -adv[i] * Math.min(1 + clip, Math.max(1 - clip, ratio)));
      if (ratio < 1 - clip || ratio > 1 + clip) clipped++;
    }
    expect(r.loss).toBeCloseTo(expected / n, 12);
    expect(r.clipFraction).toBe(clipped / n);
    expect(clipped).toBeGreaterThan(0);
    expect(r.approxKl).toBeGreaterThan(0);
    const f = (x: number[]) => clippedPolicyLoss(x, old, adv, clip, 20).loss;
    for (let i = 0; i < n; i++) expect(r.dlogp[i]).toBeCloseTo(numericGrad(f, logp, i), 6);
    // Zero gradient where the clipped branch binds, and where the log-ratio clamp binds.
    const clamped = clippedPolicyLoss([5], [0], [-1], 10, 1);
    expect(clamped.dlogp[0]).toBe(0);
  });

  it('clipped value loss: value by definition, gradient by central differences, unclipped when clip <= 0', () => {
    const next = rng(11);
    const n = 30;
    const vOld = Array.from({ length: n }, () => next() * 2 - 1);
    const v = vOld.map((x) => x + (next() - 0.5));
    const R = Array.from({ length: n }, () => next() * 2 - 1);
    const clip = 0.2;
    const r = clippedValueLoss(v, vOld, R, clip);
    let expected = 0;
    for (let i = 0; i < n; i++) {
      const vc = vOld[i] + Math.max(-clip, Math.min(clip, v[i] - vOld[i]));
      expected += 0.5 * Math.max((v[i] - R[i]) ** 2, (vc - R[i]) ** 2);
    }
    expect(r.loss).toBeCloseTo(expected / n, 12);
    expect(r.clipFraction).toBeGreaterThan(0);
    const f = (x: number[]) => clippedValueLoss(x, vOld, R, clip).loss;
    for (let i = 0; i < n; i++) expect(r.dvalues[i]).toBeCloseTo(numericGrad(f, v, i), 6);
    const plain = clippedValueLoss(v, vOld, R, 0);
    expect(plain.loss).toBeCloseTo(v.reduce((s, x, i) => s + 0.5 * (x - R[i]) ** 2, 0) / n, 12);
  });

  it('KL controller: fixed stays, adaptive moves toward the target by at most 20% * n / horizon', () => {
    expect(new KlController(0.05, null).update(100, 64)).toBe(0.05);
    const c = new KlController(0.1, { target: 6, horizon: 10000 });
    expect(c.update(12, 1000)).toBeCloseTo(0.1 * (1 + 0.2 * 0.1), 12); // error clamped at +0.2
    expect(c.update(3, 1000)).toBeCloseTo(0.1 * 1.02 * (1 - 0.02), 12); // error -0.5 clamped to -0.2
    expect(new KlController(0.1, { target: 6, horizon: 100 }).update(6, 10)).toBeCloseTo(0.1, 12);
  });

  it('k3 KL as a loss term: always ≥ 0, zero at the reference, its gradient matches central differences', () => {
    const next = rng(9);
    const logpRef = Array.from({ length: 6 }, () => -1 - next());
    const logp = logpRef.map((v) => v + (next() - 0.5));
    const { loss, dlogp } = k3KlLoss(logp, logpRef, 0.3);
    expect(loss).toBeGreaterThan(0);
    expect(k3KlLoss(logpRef, logpRef, 0.3).loss).toBe(0);
    const h = 1e-6;
    for (let i = 0; i < logp.length; i++) {
      const up = [...logp];
      const down = [...logp];
      up[i] += h;
      down[i] -= h;
      expect(dlogp[i]).toBeCloseTo((k3KlLoss(up, logpRef, 0.3).loss - k3KlLoss(down, logpRef, 0.3).loss) / (2 * h), 7);
    }
  });
});
