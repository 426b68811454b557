/**
 * The dashboard's range alignment and bucket cap, the sums per bucket, status, rating and policy version, and the
 * agreement figures passed through as the wire shape.
 */
import { adminStatsSchema } from '@flywheel/contracts';
import { OpenAiError } from '../http/openai-error';
import { MAX_BUCKETS, statsOf, statsRangeOf } from './admin-stats';

const NOW = Date.parse('2026-03-10T12:34:56Z');
const NO_AGREEMENT = { reviewOverlap: 1, decisions: { alpha: null, units: 0, values: 0 }, ratings: { alpha: null, units: 0, values: 0 } };

describe('dashboard stats', () => {
  it('defaults the range and aligns it to whole UTC buckets', () => {
    expect(statsRangeOf('hour', undefined, undefined, NOW)).toEqual({ from: new Date('2026-03-08T12:00:00Z'), to: new Date('2026-03-10T13:00:00Z') });
    expect(statsRangeOf('day', undefined, undefined, NOW)).toEqual({ from: new Date('2026-02-08T00:00:00Z'), to: new Date('2026-03-11T00:00:00Z') });
    expect(statsRangeOf('day', '2026-03-01', '2026-03-01T00:00:01Z', NOW)).toEqual({ from: new Date('2026-03-01T00:00:00Z'), to: new Date('2026-03-02T00:00:00Z') });
    expect(() => statsRangeOf('hour', '2026-03-02', '2026-03-01', NOW)).toThrow(OpenAiError);
    expect(() => statsRangeOf('hour', '2020-01-01', undefined, NOW)).toThrow(`more than ${MAX_BUCKETS}`);
  });

  it('fills every bucket and sums statuses, ratings and thumbs per policy version', () => {
    const range = { from: new Date('2026-03-10T00:00:00Z'), to: new Date('2026-03-10T03:00:00Z') };
    const stats = statsOf(
      'hour',
      range,
      [
        { t: new Date('2026-03-10T00:00:00Z'), kind: 'rating', count: 2 },
        { t: new Date('2026-03-10T02:00:00Z'), kind: 'thumbs', count: 3 },
        { t: new Date('2026-03-10T02:00:00Z'), kind: 'rating', count: 1 },
      ],
      [
        { policyVersion: 'v2', kind: 'rating', status: 'approved', value: '5', count: 1 },
        { policyVersion: 'v1', kind: 'rating', status: 'approved', value: '4', count: 1 },
        { policyVersion: 'v1', kind: 'rating', status: 'rejected', value: '1', count: 1 },
        { policyVersion: 'v1', kind: 'thumbs', status: 'pending', value: 'up', count: 2 },
        { policyVersion: 'v1', kind: 'thumbs', status: 'approved', value: 'down', count: 1 },
      ],
      NO_AGREEMENT,
    );
    expect(stats.volume.map((p) => [p.t, p.total, p.by_kind.rating, p.by_kind.thumbs])).toEqual([
      ['2026-03-10T00:00:00.000Z', 2, 2, 0],
      ['2026-03-10T01:00:00.000Z', 0, 0, 0],
      ['2026-03-10T02:00:00.000Z', 4, 1, 3],
    ]);
    expect(stats.totals).toEqual({
      feedback: 6,
      by_kind: { thumbs: 3, rating: 3, preference: 0, correction: 0, flag: 0, ranking: 0 },
      by_status: { pending: 2, approved: 3, rejected: 1 },
      approval_rate: 0.75,
      rating_distribution: { '1': 1, '2': 0, '3': 0, '4': 1, '5': 1 },
    });
    expect(stats.per_policy_version.map((v) => [v.policy_version, v.feedback, v.approval_rate, v.mean_rating, v.thumbs_up, v.thumbs_down])).toEqual([
      ['v1', 5, 2 / 3, 2.5, 2, 1],
      ['v2', 1, 1, 5, 0, 0],
    ]);
    expect(statsOf('day', range, [], [], NO_AGREEMENT).totals.approval_rate).toBeNull();
  });

  it("reports the reviewers' and raters' α with the overlap, in the contract's shape", () => {
    const range = { from: new Date('2026-03-10T00:00:00Z'), to: new Date('2026-03-11T00:00:00Z') };
    const stats = statsOf('day', range, [], [], {
      reviewOverlap: 3,
      decisions: { alpha: 113 / 152, units: 11, values: 40 },
      ratings: { alpha: null, units: 0, values: 0 },
    });
    expect(stats.agreement).toEqual({ review_overlap: 3, decisions: { alpha: 113 / 152, units: 11, values: 40 }, ratings: { alpha: null, units: 0, values: 0 } });
    expect(adminStatsSchema.parse(stats)).toEqual(stats);
  });
});
