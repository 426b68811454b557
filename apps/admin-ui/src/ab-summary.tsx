/**
 * A candidate's blind A/B result in a few words and a badge, shared by the A/B page and the Models page (pages do
 * not import each other). Presentation only.
 */
import type { AdminAbSummary } from '../../../libs/contracts/src/admin.schemas';

export const pct = (x: number) => `${(x * 100).toFixed(0)}%`;

/** The A/B of a candidate in a few words: its win rate and interval, or what it still needs. */
export function abSummaryText(s: AdminAbSummary): string {
  if (s.win_rate === null || s.interval === null) return `no verdicts yet (${s.items} pairs)`;
  return `win rate ${pct(s.win_rate)} (95% ${pct(s.interval.low)}–${pct(s.interval.high)}) over ${s.verdicts} of ${s.items}`;
}

export function AbDecisionBadge({ s }: { s: AdminAbSummary }) {
  if (s.decision === 'pending') return <span className="badge badge-pending">needs {Math.max(0, s.min_verdicts - s.verdicts)} more</span>;
  return s.decision === 'promote' ? <span className="badge badge-approved">not worse</span> : <span className="badge badge-rejected">worse</span>;
}
