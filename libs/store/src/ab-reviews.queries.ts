/**
 * The blind A/B queue's reads: the pending pairs as reviewers see them (prompt and outputs A and B, never which side
 * is the candidate or either version), and per candidate version the verdicts so far: counts, the candidate's win
 * rate (a tie counts half), its 95% Wilson interval and whether the A/B is decided. Writes are in ab-reviews.writes.ts.
 */
import { sql, type Kysely } from 'kysely';
import type { AbPrompt } from './store.tables';
import type { StoreTables } from './store.tables';

export interface AbPendingItem {
  id: string;
  prompt: AbPrompt;
  outputA: string;
  outputB: string;
  createdAt: Date;
}

/** The oldest pending pairs first (an eval run's in prompt order), and how many are pending in all. */
export async function listPendingAb(db: Kysely<StoreTables>, limit: number): Promise<{ items: AbPendingItem[]; pending: number }> {
  const rows = await db
    .selectFrom('ab_reviews')
    .select(['id', 'prompt', 'output_a', 'output_b', 'created_at'])
    .where('verdict', 'is', null)
    .orderBy('created_at')
    .orderBy('eval_run_id')
    .orderBy('pair_index')
    .limit(limit)
    .execute();
  return {
    items: rows.map((r) => ({ id: r.id, prompt: r.prompt, outputA: r.output_a, outputB: r.output_b, createdAt: r.created_at })),
    pending: await countPendingAb(db),
  };
}

/** How many pairs wait for a verdict. */
export async function countPendingAb(db: Kysely<StoreTables>): Promise<number> {
  const count = await db.selectFrom('ab_reviews').select((eb) => eb.fn.countAll<string>().as('n')).where('verdict', 'is', null).executeTakeFirstOrThrow();
  return Number(count.n);
}

/** 'pending': fewer verdicts than needed; 'refuse': the interval lies wholly below 0.5; 'promote': not significantly worse. */
export type AbDecision = 'pending' | 'promote' | 'refuse';

export interface AbSummary {
  candidateVersion: string;
  /** The version its latest pairs were compared with. */
  activeVersion: string;
  items: number;
  pending: number;
  /** Pairs with a verdict: candidateWins + activeWins + ties. */
  verdicts: number;
  candidateWins: number;
  activeWins: number;
  ties: number;
  /** (candidateWins + ties / 2) / verdicts; null before the first verdict. */
  winRate: number | null;
  /** 95% Wilson score interval of winRate; null before the first verdict. */
  interval: { low: number; high: number } | null;
  minVerdicts: number;
  /** At least minVerdicts verdicts. */
  decided: boolean;
  decision: AbDecision;
}

/** z of a two-sided 95% interval. */
const Z95 = 1.959964;

/**
 * Wilson's score interval of a proportion `p` observed over `n` trials. With ties counted as half a win, `p` is not a
 * count over n, but the interval is still the usual approximation of where the true preference rate lies.
 */
export function wilsonInterval(p: number, n: number, z: number = Z95): { low: number; high: number } {
  if (!(n > 0)) return { low: 0, high: 1 };
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / denom;
  const half = (z / denom) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return { low: Math.max(0, centre - half), high: Math.min(1, centre + half) };
}

/** The summary's numbers from its counts (pure). */
export function abSummaryOf(c: Omit<AbSummary, 'verdicts' | 'winRate' | 'interval' | 'decided' | 'decision'>): AbSummary {
  const verdicts = c.candidateWins + c.activeWins + c.ties;
  const winRate = verdicts > 0 ? (c.candidateWins + c.ties / 2) / verdicts : null;
  const interval = winRate === null ? null : wilsonInterval(winRate, verdicts);
  const decided = verdicts >= c.minVerdicts;
  const decision: AbDecision = !decided || interval === null ? 'pending' : interval.high < 0.5 ? 'refuse' : 'promote';
  return { ...c, verdicts, winRate, interval, decided, decision };
}

/** Every candidate's summary (or those named), the most recently queued first. */
export async function abSummaries(db: Kysely<StoreTables>, candidateVersions?: readonly string[]): Promise<AbSummary[]> {
  if (candidateVersions && candidateVersions.length === 0) return [];
  const rows = await db
    .selectFrom('ab_reviews')
    .select([
      'candidate_version',
      sql<string>`(array_agg(active_version ORDER BY created_at DESC))[1]`.as('active_version'),
      sql<number>`count(*)::int`.as('items'),
      sql<number>`(count(*) FILTER (WHERE verdict IS NULL))::int`.as('pending'),
      sql<number>`(count(*) FILTER (WHERE verdict = candidate_side))::int`.as('candidate_wins'),
      sql<number>`(count(*) FILTER (WHERE verdict IN ('a', 'b') AND verdict <> candidate_side))::int`.as('active_wins'),
      sql<number>`(count(*) FILTER (WHERE verdict = 'tie'))::int`.as('ties'),
      sql<number>`max(min_verdicts)::int`.as('min_verdicts'),
    ])
    .$if(candidateVersions !== undefined, (qb) => qb.where('candidate_version', 'in', candidateVersions ?? []))
    .groupBy('candidate_version')
    .orderBy(sql`max(created_at)`, 'desc')
    .orderBy('candidate_version')
    .execute();
  return rows.map((r) =>
    abSummaryOf({
      candidateVersion: r.candidate_version,
      activeVersion: r.active_version,
      items: r.items,
      pending: r.pending,
      candidateWins: r.candidate_wins,
      activeWins: r.active_wins,
      ties: r.ties,
      minVerdicts: r.min_verdicts,
    }),
  );
}
