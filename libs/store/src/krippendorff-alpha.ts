/**
 * Krippendorff's α: how far several coders agree beyond chance, for nominal values (categories) and interval values
 * (numbers whose differences mean something), with any number of coders per unit and missing values, as in
 * Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability". A pure function over the values each unit got;
 * which unit a value belongs to is all it needs (not which coder gave it). Not the ordinal or ratio metrics, and no
 * bootstrap interval.
 */

export type AlphaLevel = 'nominal' | 'interval';

export interface AlphaResult {
  /** 1 − D_o / D_e; null when undefined: no pairable value, or every pairable value the same (D_e = 0). */
  alpha: number | null;
  /** Pairable units: those with two or more values (the others are left out). */
  units: number;
  /** Pairable values (Krippendorff's n). */
  values: number;
}

/**
 * Σ over ordered pairs of distinct positions (i ≠ j) of δ²(v_i, v_j) for one list of values, by closed forms
 * instead of the coincidence matrix: nominal (δ² = 0 or 1) m² − Σ_c m_c², interval (δ² = (v_i − v_j)²)
 * 2(m Σ v² − (Σ v)²). Pairs of a value with itself add 0 in both, so summing over all pairs is the same.
 */
function pairDisagreement(values: ReadonlyArray<string | number>, level: AlphaLevel): number {
  const m = values.length;
  if (level === 'interval') {
    let sum = 0;
    let squares = 0;
    for (const v of values) {
      const x = Number(v);
      sum += x;
      squares += x * x;
    }
    return 2 * (m * squares - sum * sum);
  }
  const counts = new Map<string | number, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let same = 0;
  for (const c of counts.values()) same += c * c;
  return m * m - same;
}

/**
 * α = 1 − (n − 1) · Σ_u [Σ_{i≠j in u} δ² / (m_u − 1)] / Σ_{i≠j over all n values} δ², which is Krippendorff's
 * 1 − D_o / D_e with D_o from the coincidence matrix (each pair in a unit weighted 1 / (m_u − 1)) and D_e from its
 * margins n_c. Interval values must be finite numbers.
 */
export function krippendorffAlpha(units: ReadonlyArray<ReadonlyArray<string>>, level: 'nominal'): AlphaResult;
export function krippendorffAlpha(units: ReadonlyArray<ReadonlyArray<number>>, level: AlphaLevel): AlphaResult;
export function krippendorffAlpha(units: ReadonlyArray<ReadonlyArray<string | number>>, level: AlphaLevel): AlphaResult {
  const pairable = units.filter((u) => u.length >= 2);
  if (level === 'interval' && pairable.some((u) => u.some((v) => typeof v !== 'number' || !Number.isFinite(v)))) {
    throw new Error('interval α needs finite numbers');
  }
  const all = pairable.flat();
  const n = all.length;
  let observed = 0;
  for (const u of pairable) observed += pairDisagreement(u, level) / (u.length - 1);
  const expected = pairDisagreement(all, level);
  const alpha = n === 0 || expected === 0 ? null : 1 - ((n - 1) * observed) / expected;
  return { alpha, units: pairable.length, values: n };
}
