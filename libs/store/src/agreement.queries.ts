/**
 * The dashboard's agreement figures over feedback created in a range: Krippendorff's α (krippendorff-alpha.ts) of
 * reviewers' approve / reject decisions (review_votes) on feedback more than one reviewer decided, nominal, and of
 * 1–5 ratings on a choice more than one rater gave, interval. The database keeps only the units with two or more
 * values; the α arithmetic is the pure function's.
 */
import { sql, type Kysely } from 'kysely';
import { krippendorffAlpha, type AlphaResult } from './krippendorff-alpha';
import type { StoreTables } from './store.tables';

export interface AgreementRange {
  /** Feedback created_at ≥ from and < to. */
  from: Date;
  to: Date;
  policyVersion?: string;
}

export interface ReviewAgreement {
  /** Nominal α of approve / reject: a unit is one feedback, a value one reviewer's current decision. */
  decisions: AlphaResult;
  /**
   * Interval α of ratings: a unit is one choice of a completion, a value one rater's latest rating of it. The rater
   * is the feedback's author, else its API key, so one user re-rating counts once.
   */
  ratings: AlphaResult;
}

function unitsOf<T>(rows: ReadonlyArray<{ unit: string; value: T }>): T[][] {
  const units = new Map<string, T[]>();
  for (const r of rows) {
    const values = units.get(r.unit);
    if (values) values.push(r.value);
    else units.set(r.unit, [r.value]);
  }
  return [...units.values()];
}

export async function reviewAgreement(db: Kysely<StoreTables>, range: AgreementRange): Promise<ReviewAgreement> {
  const version = range.policyVersion === undefined ? sql`` : sql`and f.policy_version = ${range.policyVersion}`;
  // Both read only the feedback in range: the votes of a feedback counted where it has more than one.
  const decisionsQuery = sql<{ unit: string; value: string }>`
    select unit, value from (
      select v.feedback_id as unit, v.decision as value, v.seq, count(*) over (partition by v.feedback_id) as deciders
      from review_votes v
      join feedback f on f.id = v.feedback_id
      where f.created_at >= ${range.from} and f.created_at < ${range.to} ${version}
    ) decided
    where deciders > 1
    order by unit, seq`.execute(db);
  const ratingsQuery = sql<{ unit: string; value: number }>`
    with latest as (
      select distinct on (f.completion_id, coalesce(f.choice_index, 0), coalesce(f.author, f.key_id))
        f.completion_id || ':' || coalesce(f.choice_index, 0) as unit, (f.value #>> '{}')::int as value
      from feedback f
      where f.kind = 'rating' and f.created_at >= ${range.from} and f.created_at < ${range.to} ${version}
      order by f.completion_id, coalesce(f.choice_index, 0), coalesce(f.author, f.key_id), f.created_at desc, f.id desc
    )
    select unit, value from (select unit, value, count(*) over (partition by unit) as raters from latest) rated
    where raters > 1
    order by unit`.execute(db);
  const [decisions, ratings] = await Promise.all([decisionsQuery, ratingsQuery]);
  return {
    decisions: krippendorffAlpha(unitsOf(decisions.rows), 'nominal'),
    ratings: krippendorffAlpha(
      unitsOf(ratings.rows.map((r) => ({ unit: r.unit, value: Number(r.value) }))),
      'interval',
    ),
  };
}
