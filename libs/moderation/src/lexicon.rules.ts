/**
 * The rules layer: a lexicon file (terms and regex patterns per category, any language) compiled once
 * into lookup tables, then matched against a CanonicalText. Terms go through the same canonicalisation
 * as the input, so one entry catches its case, spacing, repeated-letter, leetspeak, full-width and
 * zero-width variants. Not the policy: a match carries a score; what to do with it is policy's call.
 */
import { z } from 'zod';
import { ALL_MODERATION_CATEGORIES, type AnyModerationCategory, type RuleMatch } from '@flywheel/contracts';
import { collapseRepeats, termCjk, termTokens, type CanonicalText } from './text.normalize';

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
   * CJK characters, and for each regex pattern the literal words it can start with — or null for a pattern whose
   * start cannot be read from its source (the stream then falls back to a fixed hold-back).
   */
  streamLeads(keep: (rule: LexiconRule) => boolean): StreamLeads {
    const termPrefixes = new Set<string>();
    let maxTermTokens = 0;
    let maxCjk = 0;
    const patternLeads: string[] = [];
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
      const leads = patternLeadWords(re.source);
      if (leads === null) unreadablePattern = true;
      else patternLeads.push(...leads);
    }
    return { termPrefixes, maxTermTokens, maxCjk, patternLeads: unreadablePattern ? null : [...new Set(patternLeads)] };
  }

  /**
   * An upper bound on how many words a match of the selected patterns spans: one more than the literal spaces in
   * the source (every alternative's, so it over-counts) plus the `{m,n}` repeats; an unbounded repeat (`*`, `+`
   * on a group, `\s`) counts as 64, the tail a stream looks at.
   */
  patternSpanWords(keep: (rule: LexiconRule) => boolean): number {
    let most = 1;
    for (const { rule, re } of this.patterns) {
      if (!keep(rule)) continue;
      const src = re.source;
      if (/\\s|\)[*+]|\.[*+]/.test(src)) return 64;
      const repeats = [...src.matchAll(/\{\d*,(\d+)\}/g)].reduce((n, m) => n + Number(m[1]), 0);
      most = Math.max(most, 1 + (src.match(/ /g)?.length ?? 0) + repeats);
    }
    return Math.min(most, 64);
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
      re.lastIndex = 0;
      for (const m of folded.matchAll(re)) {
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
  /** Lowercase literal starts of the patterns' first words ('' never); null when some pattern cannot be read. */
  patternLeads: string[] | null;
}

/**
 * The literal starts a pattern's match can begin with, read from its source: an optional `\b`, then either a
 * literal run or a `(?:a|b|c)` group whose alternatives each begin with a literal run; each start is cut at the
 * first regex syntax (so `jews?` gives `jew`, `wom[ae]n` gives `wom`). Null when the source does not have that
 * shape, or a start would be empty (a class, a wildcard): the caller must then assume a match can begin anywhere.
 */
export function patternLeadWords(source: string): string[] | null {
  let s = source.startsWith('\\b') ? source.slice(2) : source;
  const literal = (t: string): string => {
    const m = /^[^\\()[\]{}.*+?|^$ ]+/u.exec(t);
    if (!m) return '';
    // A quantifier after the run makes its last character optional (`jews?` can start `jew`).
    const optionalLast = /^[?*{]/.test(t.slice(m[0].length));
    return (optionalLast ? m[0].slice(0, -1) : m[0]).toLowerCase();
  };
  if (!s.startsWith('(?:')) {
    const lead = literal(s);
    return lead === '' ? null : [lead];
  }
  // The top-level alternatives of the first group.
  s = s.slice(3);
  const alternatives: string[] = [];
  let depth = 0;
  let current = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') {
      current += c + (s[i + 1] ?? '');
      i++;
      continue;
    }
    if (c === '(') depth++;
    if (c === ')') {
      if (depth === 0) {
        // An optional first group (`(?:…)?`) means a match can start after it: unreadable.
        if (/^[?*]|^\{0/.test(s.slice(i + 1))) return null;
        alternatives.push(current);
        break;
      }
      depth--;
    }
    if (c === '|' && depth === 0) {
      alternatives.push(current);
      current = '';
      continue;
    }
    current += c;
  }
  const leads = alternatives.map(literal);
  return leads.length === 0 || leads.some((l) => l === '') ? null : leads;
}

function hit(rule: LexiconRule, start: number, end: number): RuleMatch {
  return { category: rule.category as AnyModerationCategory, rule: rule.id, start, end, score: rule.score };
}

function push<V>(map: Map<string, V[]>, key: string, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}
