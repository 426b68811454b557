/**
 * The review dashboard's numbers over a time range: feedback per hour or day and kind, and per policy
 * version the review statuses, ratings and thumbs. Two grouped scans of feedback in the range (the
 * created_at index bounds them); the caller fills empty buckets and computes rates (apps/gateway/src/admin/admin-stats.ts).
 */
import { sql, type Kysely } from 'kysely';
import type { FeedbackKind, ReviewStatus, StatsBucket } from '@flywheel/contracts';
import type { StoreTables } from './store.tables';

export interface StatsRange {
  bucket: StatsBucket;
  /** created_at ≥ from and < to. */
  from: Date;
  to: Date;
  policyVersion?: string;
}

export interface VolumeCount {
  /** Bucket start (UTC). */
  t: Date;
  kind: FeedbackKind;
  count: number;
}

export interface GroupCount {
  policyVersion: string;
  kind: FeedbackKind;
  status: ReviewStatus;
  /** The value of thumbs ("up"/"down") and ratings ("1".."5"); null for other kinds. */
  value: string | null;
  count: number;
}

export async function feedbackStatsCounts(db: Kysely<StoreTables>, range: StatsRange): Promise<{ volume: VolumeCount[]; groups: GroupCount[] }> {
  const unit = range.bucket === 'hour' ? 'hour' : 'day';
  let base = db.selectFrom('feedback').where('created_at', '>=', range.from).where('created_at', '<', range.to);
  if (range.policyVersion) base = base.where('policy_version', '=', range.policyVersion);
  // A literal, not a parameter: the same expression must appear in SELECT and GROUP BY.
  const bucketStart = sql<Date>`date_trunc(${sql.lit(unit)}, created_at, 'UTC')`;
  const volume = await base
    .select([bucketStart.as('t'), 'kind', sql<number>`count(*)::int`.as('count')])
    .groupBy([bucketStart, 'kind'])
    .orderBy(bucketStart)
    .execute();
  const valueText = sql<string | null>`case when kind in ('thumbs', 'rating') then value #>> '{}' end`;
  const groups = await base
    .select(['policy_version', 'kind', 'review_status', valueText.as('value'), sql<number>`count(*)::int`.as('count')])
    .groupBy(['policy_version', 'kind', 'review_status', valueText])
    .execute();
  return {
    volume: volume.map((r) => ({ t: new Date(r.t), kind: r.kind, count: Number(r.count) })),
    groups: groups.map((r) => ({ policyVersion: r.policy_version, kind: r.kind, status: r.review_status, value: r.value, count: Number(r.count) })),
  };
}
