/**
 * How much of a streamed text the output check must still hold back: from the earliest place where a blocking
 * match could yet begin, given only what has been generated so far. A lexicon term can only begin at a trailing
 * run of canonical tokens that is a prefix of the term (the last token may still grow, a run of spaced-out
 * letters may still join); a pattern only where the folded text from there on is still the beginning of one of its
 * matches (pattern.prefix.ts runs the pattern as an automaton; "in the park" does not hold for "i will kill"); PII only
 * in the trailing run of characters a PII entity is made of, or a trailing run of digits and separators (phone, card,
 * IBAN groups). Safe text
 * is released at once; a suspicious tail waits until later text settles it. Rules that would not block in this
 * direction, and the classifier (it has no span: its block cuts at what was already sent), need no hold-back.
 * Pure and synchronous; the StreamModerator applies it. Not the matching itself (lexicon.rules, pii.detectors).
 */
import type { ModerationDirection } from '@flywheel/contracts';
import type { StreamLeads } from './lexicon.rules';
import { blocks } from './moderation.policy';
import type { Moderator } from './moderator';
import type { CanonicalText } from './text.normalize';

const CJK = /[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]/u;
/**
 * The trailing characters every PII detector's match is made of (pii.detectors.ts): e-mail addresses
 * ([A-Za-z0-9._%+-] and @), API keys ([A-Za-z0-9_-]), private-key armour (-----BEGIN), card, IBAN and phone digits,
 * letters, + and parentheses. Spaces inside numbers are the digit and IBAN runs' business.
 */
const PII_RUN = /[A-Za-z0-9._%+@()-]+$/;

/**
 * One stream's progress through the patterns: every pattern match that could begin before `patternsFrom` (an offset
 * into the stream's text) was ruled out by the text after it, so the next check scans from there, not the window.
 */
export interface HoldbackProgress {
  patternsFrom: number;
}

export class StreamHoldback {
  private readonly leads: StreamLeads;
  private readonly pii: boolean;

  constructor(moderator: Moderator, direction: ModerationDirection) {
    const policy = moderator.policy;
    this.leads = moderator.lexicon.streamLeads((rule) => blocks(policy, direction, rule.category, rule.score));
    this.pii = blocks(policy, direction, 'pii', 1);
  }

  /**
   * Offset (UTF-16, into `text`) from which the text must still be held back; text.length when nothing needs to
   * be, null when a pattern cannot be followed (the caller keeps its fixed hold-back). `window` is the tail the
   * caller just analysed: where it starts in `text` (at a word start) and its canonical form, reused here. It
   * reaches back further than any term, pattern match or PII entity this holds for. `progress` is the stream's own,
   * updated here.
   */
  holdFrom(text: string, window: { start: number; canonical: CanonicalText }, progress: HoldbackProgress): number | null {
    if (this.leads.patterns === null) return null;
    let from = text.length;
    const base = window.start;
    const tail = text.slice(base);
    const canonical = window.canonical;
    const tokens = canonical.tokens;
    const at = (offset: number) => base + offset;
    const endsInSpace = /\s$/.test(tail);

    // Lexicon terms: the earliest trailing token run that is a prefix of a blocking term.
    if (this.leads.maxTermTokens > 0) {
      for (let k = Math.max(0, tokens.length - this.leads.maxTermTokens); k < tokens.length; k++) {
        const phrase = tokens
          .slice(k)
          .map((t) => t.text)
          .join(' ');
        // A run that ends the text may still grow into a term: its own text, or the same followed by a space.
        if (this.leads.termPrefixes.has(phrase) || (endsInSpace && this.leads.termPrefixes.has(`${phrase} `))) {
          from = Math.min(from, at(tokens[k]!.start));
          break;
        }
      }
      // One-character tokens, or spaced-out letters already joined, can still join with what comes next.
      for (let k = tokens.length - 1; k >= 0; k--) {
        const t = tokens[k]!;
        const spaced = t.text.length === 1 || /\s|[.\-_]/.test(tail.slice(t.start, t.end));
        if (!spaced) break;
        from = Math.min(from, at(t.start));
      }
      if (this.leads.maxCjk > 1 && CJK.test(tail.slice(-1))) from = Math.min(from, text.length - (this.leads.maxCjk - 1));
    }

    // Patterns: the earliest place the folded text is still the start of a match, scanned from where the last check
    // left every earlier start ruled out.
    if (this.leads.patterns.length > 0) {
      const { folded, foldedStarts } = canonical;
      const scanFrom = firstAtOrAfter(foldedStarts, progress.patternsFrom - base);
      let open = folded.length;
      for (const pattern of this.leads.patterns) {
        const o = pattern.earliestOpen(folded, scanFrom);
        if (o !== null && o < open) open = o;
      }
      // A thread alive at the very end started there: nothing to hold, but the next check starts from it.
      progress.patternsFrom = open < folded.length ? at(foldedStarts[open]!) : text.length;
      from = Math.min(from, progress.patternsFrom);
    }

    // PII: the trailing run of characters a PII entity can hold (an e-mail's, a key's, a number's: a comma or a
    // quote ends it, so "Lily," goes out whole), and a trailing run of digits and separators (numbers in groups).
    if (this.pii) {
      const run = PII_RUN.exec(tail);
      if (run) from = Math.min(from, at(run.index));
      const digits = /[+(]?\d[\d ().-]*$/.exec(tail);
      if (digits) from = Math.min(from, at(digits.index));
      const iban = /[A-Z]{2}\d{2}(?: ?[A-Z0-9])*\s?$/.exec(tail);
      if (iban) from = Math.min(from, at(iban.index));
    }
    return from;
  }
}

/** The first index whose (ascending) offset is at least `offset`; starts.length when none is. */
function firstAtOrAfter(starts: Int32Array, offset: number): number {
  let lo = 0;
  let hi = starts.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (starts[mid]! < offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
