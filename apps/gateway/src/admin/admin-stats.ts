/**
 * The dashboard's answer from the store's grouped counts: the time range (defaults and the bucket cap),
 * every bucket filled (zeros included), per policy version the status counts, approval rate, rating
 * distribution and thumbs, and the agreement of reviewers and raters (Krippendorff's α) as the store computed
 * it. Pure functions; the queries are libs/store stats.queries.ts and agreement.queries.ts.
 */
import { type AdminStats, type FeedbackKind, type ReviewStatus, type StatsBucket } from '@flywheel/contracts';
import type { AlphaResult, GroupCount, ReviewAgreement, VolumeCount } from '@flywheel/store';
import { OpenAiError } from '../http/openai-error';

export const BUCKET_MS: Record<StatsBucket, number> = { hour: 3_600_000, day: 86_400_000 };
const DEFAULT_SPAN_MS: Record<StatsBucket, number> = { hour: 48 * 3_600_000, day: 30 * 86_400_000 };
export const MAX_BUCKETS = 2_000;

/** [from, to) aligned outward to whole UTC buckets. */
export function statsRangeOf(bucket: StatsBucket, from: string | undefined, to: string | undefined, nowMs: number): { from: Date; to: Date } {
  const size = BUCKET_MS[bucket];
  const toMs = to !== undefined ? Date.parse(to) : nowMs;
  const fromMs = from !== undefined ? Date.parse(from) : toMs - DEFAULT_SPAN_MS[bucket];
  if (fromMs >= toMs) throw OpenAiError.invalid("'from' must be before 'to'.", 'from', 'invalid_value');
  const start = Math.floor(fromMs / size) * size;
  const end = Math.ceil(toMs / size) * size;
  if ((end - start) / size > MAX_BUCKETS) {
    throw OpenAiError.invalid(`The range spans more than ${MAX_BUCKETS} ${bucket} buckets; narrow it or use a larger bucket.`, 'from', 'invalid_value');
  }
  return { from: new Date(start), to: new Date(end === start ? start + size : end) };
}

type KindCounts = Record<FeedbackKind, number>;
type StatusCounts = Record<ReviewStatus, number>;
type RatingCounts = AdminStats['totals']['rating_distribution'];

const zeroKinds = (): KindCounts => ({ thumbs: 0, rating: 0, preference: 0, correction: 0, flag: 0, ranking: 0 });
const zeroStatuses = (): StatusCounts => ({ pending: 0, approved: 0, rejected: 0 });
const zeroRatings = (): RatingCounts => ({ '1': 0, '2': 0, '3': 0, '4': 0, '5': 0 });
const approvalRate = (s: StatusCounts): number | null => (s.approved + s.rejected === 0 ? null : s.approved / (s.approved + s.rejected));

function addRating(ratings: RatingCounts, value: string | null, count: number): void {
  if (value === '1' || value === '2' || value === '3' || value === '4' || value === '5') ratings[value] += count;
}

const agreementOf = (a: AlphaResult): AdminStats['agreement']['decisions'] => ({ alpha: a.alpha, units: a.units, values: a.values });

export function statsOf(
  bucket: StatsBucket,
  range: { from: Date; to: Date },
  volume: VolumeCount[],
  groups: GroupCount[],
  agreement: ReviewAgreement & { reviewOverlap: number },
): AdminStats {
  const size = BUCKET_MS[bucket];
  const series = new Map<number, { total: number; by_kind: KindCounts }>();
  for (let t = range.from.getTime(); t < range.to.getTime(); t += size) series.set(t, { total: 0, by_kind: zeroKinds() });
  for (const v of volume) {
    const point = series.get(v.t.getTime());
    if (!point) continue;
    point.total += v.count;
    point.by_kind[v.kind] += v.count;
  }

  const totals = { feedback: 0, by_kind: zeroKinds(), by_status: zeroStatuses(), rating_distribution: zeroRatings() };
  const versions = new Map<string, { feedback: number; by_status: StatusCounts; ratings: RatingCounts; up: number; down: number }>();
  for (const g of groups) {
    totals.feedback += g.count;
    totals.by_kind[g.kind] += g.count;
    totals.by_status[g.status] += g.count;
    let v = versions.get(g.policyVersion);
    if (!v) versions.set(g.policyVersion, (v = { feedback: 0, by_status: zeroStatuses(), ratings: zeroRatings(), up: 0, down: 0 }));
    v.feedback += g.count;
    v.by_status[g.status] += g.count;
    if (g.kind === 'rating') {
      addRating(totals.rating_distribution, g.value, g.count);
      addRating(v.ratings, g.value, g.count);
    }
    if (g.kind === 'thumbs' && g.value === 'up') v.up += g.count;
    if (g.kind === 'thumbs' && g.value === 'down') v.down += g.count;
  }

  return {
    bucket,
    from: range.from.toISOString(),
    to: range.to.toISOString(),
    volume: [...series].map(([t, p]) => ({ t: new Date(t).toISOString(), total: p.total, by_kind: p.by_kind })),
    totals: { ...totals, approval_rate: approvalRate(totals.by_status) },
    per_policy_version: [...versions]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([policyVersion, v]) => {
        const rated = Object.values(v.ratings).reduce((a, b) => a + b, 0);
        const sum = Object.entries(v.ratings).reduce((a, [star, n]) => a + Number(star) * n, 0);
        return {
          policy_version: policyVersion,
          feedback: v.feedback,
          by_status: v.by_status,
          approval_rate: approvalRate(v.by_status),
          rating_distribution: v.ratings,
          mean_rating: rated === 0 ? null : sum / rated,
          thumbs_up: v.up,
          thumbs_down: v.down,
        };
      }),
    agreement: { review_overlap: agreement.reviewOverlap, decisions: agreementOf(agreement.decisions), ratings: agreementOf(agreement.ratings) },
  };
}
