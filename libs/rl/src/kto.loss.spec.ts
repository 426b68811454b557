// The KTO loss against values worked by hand (bc -l: σ(x) = 1/(1+e(-x))), the reference point z0 (mean mismatched
// log-ratio, clamped at 0, a constant for the gradient), its gradient against central differences of the loss itself,
// the implied-reward metrics and separation, TRL's weight advice, and its refusals.
import { ktoLoss, ktoWeightAdvice, rewardSeparation, type KtoLogps } from './kto.loss';

describe('ktoLoss', () => {
  it('is λ/2 per example with gradient ∓λβ/(4N) when the policy is still the reference', () => {
    const x: KtoLogps = { policy: [-7, -9, -3], reference: [-7, -9, -3], policyKl: [-11, -4], referenceKl: [-11, -4] };
    const r = ktoLoss(x, [true, false, true], { beta: 0.1, undesirableWeight: 2 });
    expect(r.kl).toBe(0);
    expect(Array.from(r.losses)).toEqual([0.5, 1, 0.5]);
    expect(r.loss).toBeCloseTo(2 / 3, 12);
    expect(r.dPolicy[0]).toBeCloseTo(-0.1 / 4 / 3, 12);
    expect(r.dPolicy[1]).toBeCloseTo((2 * 0.1) / 4 / 3, 12);
    expect(r.dPolicy[2]).toBeCloseTo(-0.1 / 4 / 3, 12);
    expect(r).toMatchObject({ desirable: 2, undesirable: 1, chosenReward: 0, rejectedReward: 0, margin: 0 });
  });

  it('matches a hand computation with z0 = 0.75 and λ_U = 1.5', () => {
    // Desirable: r = -10 - (-12) = 2. Undesirable: r = -9 - (-8) = -1. Mismatched pairs: log-ratios 1 and 0.5, z0 = 0.75.
    // v_D = β (2 - 0.75) = 0.125, v_U = β (0.75 + 1) = 0.175; loss_i = λ σ(-v); d loss / d π = ∓ λ β σ(v) σ(-v) / N.
    const x: KtoLogps = { policy: [-10, -9], reference: [-12, -8], policyKl: [-20, -15], referenceKl: [-21, -15.5] };
    const r = ktoLoss(x, [true, false], { beta: 0.1, desirableWeight: 1, undesirableWeight: 1.5 });
    expect(r.kl).toBeCloseTo(0.75, 12);
    expect(r.losses[0]).toBeCloseTo(0.46879062662624374275, 12);
    expect(r.losses[1]).toBeCloseTo(0.68454196914438170337, 12);
    expect(r.loss).toBeCloseTo(0.57666629788531272306, 12);
    expect(r.dPolicy[0]).toBeCloseTo(-0.01245129875068087369, 12);
    expect(r.dPolicy[1]).toBeCloseTo(0.01860717487321683076, 12);
    expect(r.rewards[0]).toBeCloseTo(0.2, 12);
    expect(r.rewards[1]).toBeCloseTo(-0.1, 12);
    expect(r.chosenReward).toBeCloseTo(0.2, 12);
    expect(r.rejectedReward).toBeCloseTo(-0.1, 12);
    expect(r.margin).toBeCloseTo(0.3, 12);
  });

  it('clamps a negative KL estimate at 0, and takes z0 = 0 without mismatched pairs', () => {
    // Mismatched log-ratio -2: z0 = max(0, -2) = 0, so v = β r = 0.2 and loss = σ(-0.2).
    const clamped = ktoLoss({ policy: [-10], reference: [-12], policyKl: [-20], referenceKl: [-18] }, [true], { beta: 0.1 });
    expect(clamped.kl).toBe(0);
    expect(clamped.loss).toBeCloseTo(0.45016600268752209144, 12);
    expect(ktoLoss({ policy: [-10], reference: [-12], policyKl: [], referenceKl: [] }, [true], { beta: 0.1 }).loss).toBe(clamped.loss);
  });

  it('has gradients equal to central differences of the mean loss, for every example, with z0 a constant', () => {
    const x = {
      policy: [-12.5, -30.25, -4, -9.5, -6],
      reference: [-13, -31, -4.5, -9, -2],
      policyKl: [-14, -27, -6.5, -1, -8],
      referenceKl: [-13.5, -28, -6, -2, -9.25],
    };
    const labels = [true, false, false, true, false];
    for (const o of [{ beta: 0.1 }, { beta: 0.5, desirableWeight: 1.33, undesirableWeight: 0.7 }, { beta: 2 }]) {
      const r = ktoLoss(x, labels, o);
      expect(r.kl).toBeCloseTo((-0.5 + 1 - 0.5 + 1 + 1.25) / 5, 12); // positive: z0 is not clamped here
      const h = 1e-5;
      for (let i = 0; i < 5; i++) {
        const at = (d: number) => ktoLoss({ ...x, policy: x.policy.map((v, j) => (j === i ? v + d : v)) }, labels, o).loss;
        const numeric = (at(h) - at(-h)) / (2 * h);
        expect(Math.abs(r.dPolicy[i] - numeric)).toBeLessThan(1e-9);
      }
      expect(r.loss).toBeCloseTo(r.losses.reduce((a, b) => a + b, 0) / 5, 12);
    }
    // z0 moves with the mismatched pairs' policy log-probs, but it is detached: the gradient does not follow it there.
    expect(ktoLoss({ ...x, policyKl: x.policyKl.map((v) => v + 1) }, labels, { beta: 0.1 }).kl).toBeCloseTo(1.45, 12);
  });

  it('stays finite far from the reference', () => {
    const r = ktoLoss({ policy: [0, -1e4], reference: [-1e4, 0], policyKl: [0], referenceKl: [0] }, [true, false], { beta: 1 });
    expect(Array.from(r.losses)).toEqual([0, 0]);
    expect(r.dPolicy.every((d) => d === 0)).toBe(true); // saturated: no gradient, and no NaN
    const wrong = ktoLoss({ policy: [-1e4, 0], reference: [0, -1e4], policyKl: [0], referenceKl: [0] }, [true, false], { beta: 1 });
    expect(Array.from(wrong.losses)).toEqual([1, 1]);
    expect(wrong.loss).toBe(1);
    expect(wrong.dPolicy.every((d) => d === 0)).toBe(true);
  });

  it('reports NaN rewards for a kind the batch lacks', () => {
    const r = ktoLoss({ policy: [-1, -2], reference: [-1.5, -2], policyKl: [], referenceKl: [] }, [true, true], { beta: 0.1 });
    expect(r.chosenReward).toBeCloseTo(0.025, 12);
    expect(r.rejectedReward).toBeNaN();
    expect(r.margin).toBeNaN();
  });

  it('refuses mismatched arrays and non-positive β or weights', () => {
    const x: KtoLogps = { policy: [0], reference: [0], policyKl: [0], referenceKl: [0] };
    expect(() => ktoLoss({ ...x, reference: [] }, [true], { beta: 0.1 })).toThrow(/one entry per example/);
    expect(() => ktoLoss({ ...x, referenceKl: [] }, [true], { beta: 0.1 })).toThrow(/mismatched pair/);
    expect(() => ktoLoss(x, [true], { beta: 0 })).toThrow(/beta/);
    expect(() => ktoLoss(x, [true], { beta: 0.1, undesirableWeight: -1 })).toThrow(/undesirableWeight/);
  });
});

describe('rewardSeparation', () => {
  it('is the fraction of desirable/undesirable pairs ranked right, ties half, NaN with one kind only', () => {
    expect(rewardSeparation([0, 0, 0], [true, false, false])).toBe(0.5);
    // Desirable 0.3 and -0.1 against undesirable 0.1 and -0.2: 1 + 1 + 0 + 1 of 4 pairs.
    expect(rewardSeparation([0.3, 0.1, -0.1, -0.2], [true, false, true, false])).toBe(0.75);
    expect(rewardSeparation([1, 2], [true, true])).toBeNaN();
  });
});

describe('ktoWeightAdvice', () => {
  it("follows TRL's ranges: λ_D n_D / (λ_U n_U) in [1, 4/3]", () => {
    expect(ktoWeightAdvice(10, 10, 1, 1)).toBeNull();
    expect(ktoWeightAdvice(40, 30, 1, 1)).toBeNull(); // 40/30 = 1.33
    expect(ktoWeightAdvice(60, 30, 1, 1.5)).toBeNull(); // undesirable weight in [2/1.33, 2]
    expect(ktoWeightAdvice(60, 30, 1, 1)).toBe(
      '60 desirable and 30 undesirable examples: with these counts set either desirableWeight in [0.5, 0.67] or undesirableWeight in [1.5, 2] (not both)',
    );
  });
});
