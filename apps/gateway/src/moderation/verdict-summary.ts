/**
 * Moderation verdicts (the service's `results` + `flywheel_results` pair, or an in-process TextVerdict,
 * which has the same two parts) reduced to the completion record's summary, and several texts' summaries
 * merged into one. Plain functions.
 */
import type { FlywheelModerationResult, ModerationAction, ModerationResult, ModerationVerdictSummary } from '@flywheel/contracts';

export interface VerdictParts {
  result: ModerationResult;
  flywheel: FlywheelModerationResult;
}

const RANK: Record<ModerationAction, number> = { allow: 0, flag: 1, block: 2 };

export function verdictSummaryOf({ result, flywheel }: VerdictParts): ModerationVerdictSummary {
  return {
    action: flywheel.action,
    blockedCategories: [...flywheel.blocked_categories],
    flaggedCategories: [...flywheel.flagged_categories],
    scores: { ...result.category_scores, pii: flywheel.pii.score, prompt_injection: flywheel.prompt_injection.score },
    matches: [...flywheel.matches],
    pii: [...flywheel.pii.entities],
  };
}

/**
 * Several texts' verdicts as one: the worst action, every category that fired, the max score per
 * category, and matches tagged with the index of the text they were found in (`text`), offsets shifted
 * by `offset` (a piece of a longer text); a match seen twice (overlapping pieces) is kept once.
 */
export function mergeVerdicts(verdicts: ReadonlyArray<VerdictParts & { text: number; offset: number }>): ModerationVerdictSummary {
  const merged: ModerationVerdictSummary = { action: 'allow', blockedCategories: [], flaggedCategories: [], scores: {}, matches: [], pii: [] };
  const seen = new Set<string>();
  for (const v of verdicts) {
    const s = verdictSummaryOf(v);
    if (RANK[s.action] > RANK[merged.action]) merged.action = s.action;
    for (const c of s.blockedCategories) if (!merged.blockedCategories.includes(c)) merged.blockedCategories.push(c);
    for (const c of s.flaggedCategories) if (!merged.flaggedCategories.includes(c)) merged.flaggedCategories.push(c);
    for (const [c, score] of Object.entries(s.scores) as Array<[keyof typeof s.scores, number]>) {
      merged.scores[c] = Math.max(merged.scores[c] ?? 0, score);
    }
    for (const m of s.matches) {
      const key = `m:${v.text}:${m.rule}:${m.start + v.offset}`;
      if (!seen.has(key)) merged.matches.push({ ...m, start: m.start + v.offset, end: m.end + v.offset, text: v.text }), seen.add(key);
    }
    for (const p of s.pii) {
      const key = `p:${v.text}:${p.type}:${p.start + v.offset}`;
      if (!seen.has(key)) merged.pii.push({ ...p, start: p.start + v.offset, end: p.end + v.offset, text: v.text }), seen.add(key);
    }
  }
  // A category both blocked by one text and flagged by another is reported as blocked only.
  merged.flaggedCategories = merged.flaggedCategories.filter((c) => !merged.blockedCategories.includes(c));
  return merged;
}
