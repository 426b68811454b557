/**
 * Krippendorff's α against the worked examples of Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability"
 * (published: binary 0.095; the 4-coder, 12-unit data with missing values: nominal 0.743, interval 0.849), each
 * recomputed here by hand as exact fractions, plus the edges where α is 1, negative or undefined.
 */
import { krippendorffAlpha } from './krippendorff-alpha';

/** Columns of a reliability data matrix (coders × units) → the values of each unit, missing ones (null) left out. */
function unitsOf<T extends number | string>(rows: ReadonlyArray<ReadonlyArray<T | null>>): T[][] {
  return rows[0]!.map((_, u) =>
    rows.flatMap((row) => {
      const v = row[u];
      return v === null || v === undefined ? [] : [v];
    }),
  );
}

describe("Krippendorff's alpha", () => {
  it('two coders, binary data, ten units: α = 2/21 ≈ 0.095', () => {
    const units = unitsOf([
      [0, 1, 0, 0, 0, 0, 0, 0, 1, 0],
      [1, 1, 1, 0, 0, 1, 0, 0, 0, 0],
    ]);
    // n = 20 values: fourteen 0s, six 1s. Four units disagree, each adding 2 ordered pairs weighted 1/(2−1): D_o sum 8.
    // D_e sum = n² − Σ n_c² = 400 − (196 + 36) = 168. α = 1 − 19·8/168 = 2/21.
    expect(krippendorffAlpha(units, 'nominal')).toEqual({ alpha: expect.closeTo(2 / 21, 12), units: 10, values: 20 });
    expect(krippendorffAlpha(units, 'nominal').alpha!.toFixed(3)).toBe('0.095');
    // Two categories and the squared difference of 0/1 agree: interval gives the same α.
    expect(krippendorffAlpha(units, 'interval').alpha).toBeCloseTo(2 / 21, 12);
  });

  // Four observers, twelve units, values 1–5, null where an observer gave none.
  const matrix = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, null, null, null],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, null, 3],
    [null, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, null],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, null],
  ];

  it('four coders with missing values, nominal: α = 113/152 ≈ 0.743', () => {
    // Unit 12 has one value and is left out: n = 40, with n_c = 9, 13, 10, 5, 3 for the values 1..5.
    // D_e sum = 40² − (81 + 169 + 100 + 25 + 9) = 1216. Disagreeing units: 2 (2,3,2,2: (16−10)/3 = 2), 6 (1,2,3,4:
    // (16−4)/3 = 4), 8 (1,2,1,1: (16−10)/3 = 2): D_o sum 8. α = 1 − 39·8/1216 = 113/152.
    expect(krippendorffAlpha(unitsOf(matrix), 'nominal')).toEqual({ alpha: expect.closeTo(113 / 152, 12), units: 11, values: 40 });
    expect(krippendorffAlpha(unitsOf(matrix), 'nominal').alpha!.toFixed(3)).toBe('0.743');
  });

  it('the same data at the interval level: α = 951/1120 ≈ 0.849', () => {
    // Per unit 2(m Σv² − (Σv)²)/(m − 1): unit 2 (2,2,3,2) → 2(4·21 − 81)/3 = 2, unit 6 (1,2,3,4) → 2(4·30 − 100)/3 = 40/3,
    // unit 8 (1,1,2,1) → 2(4·7 − 25)/3 = 2: D_o sum 52/3. Over all 40 values Σv = 100 and Σv² = 306, so the D_e sum is
    // 2(40·306 − 100²) = 4480. α = 1 − 39·(52/3)/4480 = 951/1120.
    expect(krippendorffAlpha(unitsOf(matrix), 'interval')).toEqual({ alpha: expect.closeTo(951 / 1120, 12), units: 11, values: 40 });
    expect(krippendorffAlpha(unitsOf(matrix), 'interval').alpha!.toFixed(3)).toBe('0.849');
  });

  it('is 1 for perfect agreement, negative for systematic disagreement, and undefined without variation or pairs', () => {
    expect(krippendorffAlpha([['approve', 'approve'], ['reject', 'reject', 'reject']], 'nominal').alpha).toBe(1);
    // Every unit split, the values balanced overall: disagreement above chance.
    expect(krippendorffAlpha([['approve', 'reject'], ['reject', 'approve']], 'nominal').alpha).toBeCloseTo(1 - (3 * 4) / 8, 12);
    expect(krippendorffAlpha([['approve', 'approve'], ['approve', 'approve']], 'nominal')).toEqual({ alpha: null, units: 2, values: 4 });
    expect(krippendorffAlpha([['approve'], ['reject'], []], 'nominal')).toEqual({ alpha: null, units: 0, values: 0 });
    expect(krippendorffAlpha([], 'interval')).toEqual({ alpha: null, units: 0, values: 0 });
    expect(() => krippendorffAlpha([[1, Number.NaN]], 'interval')).toThrow('finite numbers');
  });

  it('does not depend on the order of units or of values within a unit', () => {
    const units = unitsOf(matrix);
    const shuffled = [...units].reverse().map((u) => [...u].reverse());
    expect(krippendorffAlpha(shuffled, 'interval').alpha).toBeCloseTo(krippendorffAlpha(units, 'interval').alpha!, 12);
  });
});
