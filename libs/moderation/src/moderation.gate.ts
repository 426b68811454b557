/**
 * Whether a retrained moderation classifier may replace the active one: both are judged on the same held-out
 * examples (seed text and reviewed text the candidate never trained on) under the same lexicon and policy. The
 * candidate beats the active one when it gets more of the held-out reviewed examples (ids `rv-…`, what the
 * reviewers asked for) right, or, without reviewed examples held out or with as many right, a higher macro F1 of
 * the layered moderator over the categories with held-out support; and it must not pay for that elsewhere: macro
 * F1 at most MACRO_F1_SLACK lower, reviewed accuracy never lower, hard-benign false positives at most
 * HARD_BENIGN_SLACK higher. The slack exists because a few dozen reviewed lines move every head's calibrated
 * threshold a little: a macro F1 over ~14 categories with a handful of held-out positives each moves by a few
 * thousandths from that alone. Pure; the trainer job does the I/O.
 */
import type { ModerationHeldout } from '@flywheel/contracts';
import { evaluate } from './classifier.training';
import type { Moderator } from './moderator';
import type { SeedExample } from './seed.dataset';

/** How much more hard-benign text a candidate may flag (absolute rate) and still pass. */
export const HARD_BENIGN_SLACK = 0.02;
/** How much lower a candidate's macro F1 may be when it gets more reviewed examples right. */
export const MACRO_F1_SLACK = 0.01;

const round = (x: number | null): number | null => (x === null ? null : Math.round(x * 10_000) / 10_000);

export function heldoutFigures(moderator: Moderator, examples: readonly SeedExample[], version: string): ModerationHeldout {
  const report = evaluate(moderator, examples);
  const rows = Object.values(report.moderator).filter((m) => m.support > 0);
  const macro = rows.length ? rows.reduce((s, m) => s + (m.f1 ?? 0), 0) / rows.length : 0;
  const tp = rows.reduce((s, m) => s + m.tp, 0);
  const fn = rows.reduce((s, m) => s + m.fn, 0);
  const reviewed = examples.filter((e) => e.id.startsWith('rv-'));
  let harmful = 0, caught = 0, right = 0;
  for (const e of reviewed) {
    const d = moderator.check(e.text, 'input').decision;
    const hit = new Set<string>([...d.blocked, ...d.flagged]);
    if (e.labels.length > 0) {
      harmful++;
      const ok = e.labels.some((l) => hit.has(l));
      caught += ok ? 1 : 0;
      right += ok ? 1 : 0;
    } else {
      right += d.action === 'allow' ? 1 : 0;
    }
  }
  return {
    version,
    macro_f1: round(macro) ?? 0,
    recall: round(tp + fn > 0 ? tp / (tp + fn) : null),
    hard_benign_fpr: round(report.falsePositiveRate.hardBenign),
    reviewed_recall: round(harmful > 0 ? caught / harmful : null),
    reviewed_accuracy: round(reviewed.length > 0 ? right / reviewed.length : null),
  };
}

export interface ModerationGateVerdict {
  candidate: ModerationHeldout;
  active: ModerationHeldout;
  pass: boolean;
  reasons: string[];
}

export function judgeModerationCandidate(
  candidate: Moderator,
  active: Moderator,
  heldout: readonly SeedExample[],
  names: { candidate: string; active: string },
): ModerationGateVerdict {
  const c = heldoutFigures(candidate, heldout, names.candidate);
  const a = heldoutFigures(active, heldout, names.active);
  const reasons: string[] = [];
  const reviewedUp = c.reviewed_accuracy !== null && a.reviewed_accuracy !== null && c.reviewed_accuracy > a.reviewed_accuracy;
  if (!reviewedUp && !(c.macro_f1 > a.macro_f1)) {
    reasons.push(`neither the held-out reviewed accuracy (${c.reviewed_accuracy ?? '-'} vs ${a.reviewed_accuracy ?? '-'}) nor the macro F1 (${c.macro_f1} vs ${a.macro_f1}) beats the active version`);
  }
  if (c.reviewed_accuracy !== null && a.reviewed_accuracy !== null && c.reviewed_accuracy < a.reviewed_accuracy) {
    reasons.push(`held-out reviewed accuracy ${c.reviewed_accuracy} is below the active version's ${a.reviewed_accuracy}`);
  }
  if (c.macro_f1 < a.macro_f1 - MACRO_F1_SLACK) reasons.push(`held-out macro F1 ${c.macro_f1} is more than ${MACRO_F1_SLACK} below the active version's ${a.macro_f1}`);
  if (c.hard_benign_fpr !== null && a.hard_benign_fpr !== null && c.hard_benign_fpr > a.hard_benign_fpr + HARD_BENIGN_SLACK) {
    reasons.push(`hard-benign false-positive rate ${c.hard_benign_fpr} is above the active version's ${a.hard_benign_fpr} + ${HARD_BENIGN_SLACK}`);
  }
  return { candidate: c, active: a, pass: reasons.length === 0, reasons };
}
