/**
 * The rules layer: a lexicon file (terms and regex patterns per category, any language) compiled once
 * into lookup tables, then matched against a CanonicalText. Terms go through the same canonicalisation
 * as the input, so one entry catches its case, spacing, repeated-letter, leetspeak, full-width and
 * zero-width variants. Not the policy: a match carries a score; what to do with it is policy's call.
 */
import { z } from 'zod';
import { ALL_MODERATION_CATEGORIES, type AnyModerationCategory, type RuleMatch } from '@flywheel/contracts';
import { collapseRepeats, termCjk, termTokens, type CanonicalText } from './text.normalize';
import { PatternPrefix } from './pattern.prefix';
import { matchesOf } from './regex.matches';

export const lexiconRuleSchema = z
  .object({
    id: z.string().min(1),
    category: z.enum(ALL_MODERATION_CATEGORIES),
    /** Rule score in [0, 1]; the category score is the max of rule and classifier scores. */
    score: z.number().min(0).max(1).default(0.9),
    /** Words or phrases; a trailing `*` matches any word starting with the last word (`kill*`). */
    terms: z.array(z.string().min(1)).default([]),
    /** Case-insensitive regexes over the folded text (NFKC, lowercase, one space between words). */
    patterns: z.array(z.string().min(1)).default([]),
    /** Texts the rule must match (documentation, and fixtures for the pattern tests). */
    examples: z.array(z.string().min(1)).default([]),
  })
  .strict();
export type LexiconRule = z.infer<typeof lexiconRuleSchema>;

export const lexiconSchema = z.object({ version: z.string(), rules: z.array(lexiconRuleSchema) }).strict();
export type Lexicon = z.infer<typeof lexiconSchema>;

interface CompiledTerm {
  rule: LexiconRule;
  tokens: string[];
  prefix: boolean;
}

/** Shortest word a trailing-`*` prefix may be; shorter prefixes would match half the dictionary. */
const MIN_PREFIX = 3;
/** Multi-word terms also match written as one word (`killyourself`) when at least this long. */
const MIN_JOINED = 6;

export class CompiledLexicon {
  readonly version: string;
  readonly ruleCount: number;
  private readonly exact = new Map<string, CompiledTerm[]>();
  private readonly prefixes = new Map<string, CompiledTerm[]>();
  /** The first MIN_PREFIX characters of every key of `prefixes`. */
  private readonly prefixStarts = new Set<string>();
  private readonly cjk = new Map<string, Array<{ rule: LexiconRule; text: string }>>();
  private readonly patterns: Array<{ rule: LexiconRule; re: RegExp }> = [];

  constructor(lexicon: Lexicon) {
    this.version = lexicon.version;
    this.ruleCount = lexicon.rules.length;
    for (const rule of lexicon.rules) {
      for (const raw of rule.terms) this.addTerm(rule, raw);
      for (const source of rule.patterns) {
        try {
          this.patterns.push({ rule, re: new RegExp(source, 'giu') });
        } catch (err) {
          throw new Error(`lexicon rule ${rule.id}: invalid pattern ${JSON.stringify(source)}: ${(err as Error).message}`);
        }
      }
    }
    for (const key of this.prefixes.keys()) this.prefixStarts.add(key.slice(0, MIN_PREFIX));
  }

  private addTerm(rule: LexiconRule, raw: string): void {
    const prefix = raw.endsWith('*');
    const term = prefix ? raw.slice(0, -1) : raw;
    const cjk = termCjk(term);
    const tokens = termTokens(term);
    if (cjk.length > 0 && tokens.length === 0) {
      push(this.cjk, cjk[0], { rule, text: cjk });
      return;
    }
    if (tokens.length === 0) throw new Error(`lexicon rule ${rule.id}: term ${JSON.stringify(raw)} has no letters`);
    if (prefix && tokens[tokens.length - 1].length < MIN_PREFIX) {
      throw new Error(`lexicon rule ${rule.id}: prefix term ${JSON.stringify(raw)} is shorter than ${MIN_PREFIX} letters`);
    }
    if (prefix && tokens.length === 1) push(this.prefixes, tokens[0], { rule, tokens, prefix });
    else push(this.exact, tokens[0], { rule, tokens, prefix });
    if (tokens.length > 1) {
      const joined = collapseRepeats(tokens.join(''));
      if (joined.length >= MIN_JOINED) {
        if (prefix) push(this.prefixes, joined, { rule, tokens: [joined], prefix });
        else push(this.exact, joined, { rule, tokens: [joined], prefix: false });
      }
    }
  }

  /**
   * What a stream must hold back for these rules (those `keep` selects, e.g. the ones that would block): every prefix
   * of each term's canonical tokens (joined by one space, and of its joined form), the longest term in tokens and in
   * CJK characters, and each regex pattern as a partial matcher (pattern.prefix.ts) — or null for the patterns when one
   * cannot be followed (the stream then falls back to a fixed hold-back).
   */
  streamLeads(keep: (rule: LexiconRule) => boolean): StreamLeads {
    const termPrefixes = new Set<string>();
    let maxTermTokens = 0;
    let maxCjk = 0;
    const patterns: PatternPrefix[] = [];
    let unreadablePattern = false;
    for (const list of [...this.exact.values(), ...this.prefixes.values()]) {
      for (const term of list) {
        if (!keep(term.rule)) continue;
        const phrase = term.tokens.join(' ');
        for (let i = 1; i <= phrase.length; i++) termPrefixes.add(phrase.slice(0, i));
        maxTermTokens = Math.max(maxTermTokens, term.tokens.length);
      }
    }
    for (const list of this.cjk.values()) for (const t of list) if (keep(t.rule)) maxCjk = Math.max(maxCjk, t.text.length);
    for (const { rule, re } of this.patterns) {
      if (!keep(rule)) continue;
      const prefix = PatternPrefix.compile(re.source);
      if (prefix === null) unreadablePattern = true;
      else patterns.push(prefix);
    }
    return { termPrefixes, maxTermTokens, maxCjk, patterns: unreadablePattern ? null : patterns };
  }

  match(text: CanonicalText): RuleMatch[] {
    const out: RuleMatch[] = [];
    const { tokens } = text;
    for (let i = 0; i < tokens.length; i++) {
      const tok = tokens[i].text;
      for (const term of this.exact.get(tok) ?? []) {
        const n = term.tokens.length;
        if (i + n > tokens.length) continue;
        let ok = true;
        for (let k = 1; k < n && ok; k++) {
          const want = term.tokens[k];
          const got = tokens[i + k].text;
          ok = term.prefix && k === n - 1 ? got.startsWith(want) : got === want;
        }
        if (ok) out.push(hit(term.rule, tokens[i].start, tokens[i + n - 1].end));
      }
      // Most words start no prefix term: one lookup of their first letters rules them out.
      if (tok.length < MIN_PREFIX || !this.prefixStarts.has(tok.slice(0, MIN_PREFIX))) continue;
      for (let len = MIN_PREFIX; len <= tok.length; len++) {
        for (const term of this.prefixes.get(tok.slice(0, len)) ?? []) out.push(hit(term.rule, tokens[i].start, tokens[i].end));
      }
    }
    const { cjk, cjkStarts, cjkEnds } = text;
    for (let i = 0; i < cjk.length; i++) {
      for (const term of this.cjk.get(cjk[i]) ?? []) {
        if (cjk.startsWith(term.text, i)) out.push(hit(term.rule, cjkStarts[i], cjkEnds[i + term.text.length - 1]));
      }
    }
    const { folded, foldedStarts, foldedEnds } = text;
    for (const { rule, re } of this.patterns) {
      for (const m of matchesOf(re, folded)) {
        if (m[0].length === 0) continue;
        out.push(hit(rule, foldedStarts[m.index], foldedEnds[m.index + m[0].length - 1]));
      }
    }
    return out.sort((a, b) => a.start - b.start || b.score - a.score);
  }
}

export interface StreamLeads {
  termPrefixes: Set<string>;
  maxTermTokens: number;
  maxCjk: number;
  /** The blocking patterns as partial matchers; null when some pattern cannot be followed. */
  patterns: PatternPrefix[] | null;
}

function hit(rule: LexiconRule, start: number, end: number): RuleMatch {
  return { category: rule.category as AnyModerationCategory, rule: rule.id, start, end, score: rule.score };
}

function push<V>(map: Map<string, V[]>, key: string, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}
