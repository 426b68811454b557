// The DPO loss against values worked by hand (log 2 at a tie, the sigmoid and conservative forms at a known margin),
// its gradients against central differences of the loss itself, the implied-reward metrics, and its refusals.
import { dpoLoss, type DpoLogps } from './dpo.loss';

const one = (pc: number, pr: number, rc: number, rr: number): DpoLogps => ({ policyChosen: [pc], policyRejected: [pr], referenceChosen: [rc], referenceRejected: [rr] });

describe('dpoLoss', () => {
  it('is log 2 with gradient ∓β/2 when the policy is still the reference', () => {
    const r = dpoLoss(one(-7, -9, -7, -9), { beta: 0.1 });
    expect(r.loss).toBeCloseTo(Math.LN2, 12);
    expect(r.dPolicyChosen[0]).toBeCloseTo(-0.05, 12);
    expect(r.dPolicyRejected[0]).toBeCloseTo(0.05, 12);
    expect(r.margins[0]).toBe(0);
    expect(r.accuracy).toBe(0.5);
  });

  it('matches hand-computed values at β m = 0.3 (plain and label-smoothed)', () => {
    // chosen gained 2 nats over the reference, rejected lost 1: m = 3, z = β m = 0.3.
    const x = one(-10, -15, -12, -14);
    const plain = dpoLoss(x, { beta: 0.1 });
    expect(plain.loss).toBeCloseTo(0.5543552444685271, 12); // log(1 + e^-0.3)
    expect(plain.dPolicyChosen[0]).toBeCloseTo(-0.1 * 0.425557483188341, 12); // -β σ(-0.3)
    expect(plain.dPolicyRejected[0]).toBeCloseTo(0.1 * 0.425557483188341, 12);
    expect(plain.chosenRewards[0]).toBeCloseTo(0.2, 12);
    expect(plain.rejectedRewards[0]).toBeCloseTo(-0.1, 12);
    expect(plain.margins[0]).toBeCloseTo(0.3, 12);
    expect(plain.accuracy).toBe(1);
    const smoothed = dpoLoss(x, { beta: 0.1, labelSmoothing: 0.1 });
    expect(smoothed.loss).toBeCloseTo(0.9 * 0.5543552444685271 + 0.1 * Math.log1p(Math.exp(0.3)), 12);
    expect(smoothed.dPolicyChosen[0]).toBeCloseTo(0.1 * -0.32555748318834105, 12); // β (-(1-ε) σ(-z) + ε σ(z))
  });

  it('has gradients equal to central differences of the mean loss, for every pair', () => {
    const x = {
      policyChosen: [-12.5, -30.25, -4, -9.5],
      policyRejected: [-14, -27, -6.5, -1],
      referenceChosen: [-13, -31, -4.5, -9],
      referenceRejected: [-13.5, -28, -6, -2],
    };
    for (const o of [{ beta: 0.1 }, { beta: 0.5, labelSmoothing: 0.2 }, { beta: 2 }]) {
      const r = dpoLoss(x, o);
      const h = 1e-5;
      for (const side of ['policyChosen', 'policyRejected'] as const) {
        const d = side === 'policyChosen' ? r.dPolicyChosen : r.dPolicyRejected;
        for (let i = 0; i < 4; i++) {
          const up = { ...x, [side]: x[side].map((v, j) => (j === i ? v + h : v)) };
          const down = { ...x, [side]: x[side].map((v, j) => (j === i ? v - h : v)) };
          const numeric = (dpoLoss(up, o).loss - dpoLoss(down, o).loss) / (2 * h);
          expect(Math.abs(d[i] - numeric)).toBeLessThan(1e-8);
        }
      }
      // m = 1, -0.25, 1, -1.5: pairs 0 and 2 prefer chosen, 1 and 3 rejected.
      expect(r.accuracy).toBe(0.5);
      expect(r.loss).toBeCloseTo(r.losses.reduce((a, b) => a + b, 0) / 4, 12);
    }
  });

  it('stays finite at extreme margins', () => {
    const r = dpoLoss(one(0, -1e4, -1e4, 0), { beta: 1 });
    expect(r.loss).toBe(0);
    expect(dpoLoss(one(-1e4, 0, 0, -1e4), { beta: 1 }).loss).toBeCloseTo(2e4, 6);
    const far = dpoLoss(one(-1e4, 0, 0, -1e4), { beta: 1 });
    expect(far.dPolicyChosen[0]).toBe(-1);
    expect(far.dPolicyRejected[0]).toBe(1);
  });

  it('refuses mismatched arrays and out-of-range β or ε', () => {
    expect(() => dpoLoss({ ...one(0, 0, 0, 0), referenceRejected: [] }, { beta: 0.1 })).toThrow(/one entry per pair/);
    expect(() => dpoLoss(one(0, 0, 0, 0), { beta: 0 })).toThrow(/beta/);
    expect(() => dpoLoss(one(0, 0, 0, 0), { beta: 0.1, labelSmoothing: 0.5 })).toThrow(/labelSmoothing/);
  });
});
