/**
 * How much of a streamed text the output check must still hold back: from the earliest place where a blocking
 * match could yet begin, given only what has been generated so far. A lexicon term can only begin at a trailing
 * run of canonical tokens that is a prefix of the term (the last token may still grow, a run of spaced-out
 * letters may still join); a pattern only at one of the literal words it starts with, within its span; PII only
 * in the trailing unbroken run, or a trailing run of digits and separators (phone, card, IBAN groups). Safe text
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

export class StreamHoldback {
  private readonly leads: StreamLeads;
  private readonly patternSpanWords: number;
  private readonly pii: boolean;

  constructor(moderator: Moderator, direction: ModerationDirection) {
    const policy = moderator.policy;
    this.leads = moderator.lexicon.streamLeads((rule) => blocks(policy, direction, rule.category, rule.score));
    this.pii = blocks(policy, direction, 'pii', 1);
    this.patternSpanWords = moderator.lexicon.patternSpanWords((rule) => blocks(policy, direction, rule.category, rule.score));
  }

  /**
   * Offset (UTF-16, into `text`) from which the text must still be held back; text.length when nothing needs to
   * be, null when a pattern's start cannot be read (the caller keeps its fixed hold-back). `window` is the tail the
   * caller just analysed: where it starts in `text` (at a word start) and its canonical form, reused here. It
   * reaches back further than any term, pattern span or PII entity this holds for.
   */
  holdFrom(text: string, window: { start: number; canonical: CanonicalText }): number | null {
    if (this.leads.patternLeads === null) return null;
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

    // Patterns: a word within the pattern span that one of them can start with.
    if (this.leads.patternLeads.length > 0) {
      const words = [...canonical.folded.matchAll(/\S+/g)];
      const last = words.length - 1;
      for (let w = Math.max(0, words.length - this.patternSpanWords); w < words.length; w++) {
        const word = words[w]![0];
        const starts = this.leads.patternLeads.some((lead) => word.startsWith(lead) || (w === last && !endsInSpace && lead.startsWith(word)));
        if (starts) {
          from = Math.min(from, at(canonical.foldedStarts[words[w]!.index!]!));
          break;
        }
      }
    }

    // PII: the trailing unbroken run, and a trailing run of digits and separators (numbers written in groups).
    if (this.pii) {
      const run = /\S+$/.exec(tail);
      if (run) from = Math.min(from, at(run.index));
      const digits = /[+(]?\d[\d ().-]*$/.exec(tail);
      if (digits) from = Math.min(from, at(digits.index));
      const iban = /[A-Z]{2}\d{2}(?: ?[A-Z0-9])*\s?$/.exec(tail);
      if (iban) from = Math.min(from, at(iban.index));
    }
    return from;
  }
}
