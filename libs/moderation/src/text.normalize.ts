/**
 * Canonical forms of a text for matching and for the classifier, each with a map back to the original:
 * `folded` (NFKC, case, diacritics, homoglyphs, zero-width removed, whitespace runs as one space) for
 * regex patterns; `tokens` (folded + leetspeak, repeated letters collapsed, spaced-out letters joined)
 * for lexicon terms and n-grams; `cjk` (Han/kana only, separators dropped) for Chinese terms.
 * Pure functions, no I/O. Offsets are UTF-16 indices into the original string.
 */

export interface Token {
  /** Canonical text of the token: lowercase latin/other letters and digits, no repeated runs. */
  text: string;
  /** Original offsets: [start, end). */
  start: number;
  end: number;
}

export interface CanonicalText {
  folded: string;
  /** Original offset of each UTF-16 unit of `folded` (start of its source character) and just past it. */
  foldedStarts: Int32Array;
  foldedEnds: Int32Array;
  tokens: Token[];
  cjk: string;
  cjkStarts: Int32Array;
  cjkEnds: Int32Array;
}

const enum Kind {
  Skip,
  Space,
  Letter,
  Digit,
  Leet,
  Cjk,
  /** Apostrophes: kept in `folded`, invisible to tokens, so "don't" is one word ("dont"). */
  Joiner,
}

/** Lookalikes that NFKC leaves alone: Cyrillic and Greek letters used to dodge Latin word lists. */
const CONFUSABLES: Record<string, string> = {
  а: 'a', в: 'b', е: 'e', ё: 'e', к: 'k', м: 'm', н: 'h', о: 'o', р: 'p', с: 'c', т: 't', у: 'y', х: 'x',
  і: 'i', ј: 'j', ѕ: 's', ԁ: 'd', ɡ: 'g', α: 'a', ε: 'e', ι: 'i', κ: 'k', ο: 'o', ρ: 'p', τ: 't', υ: 'u',
  ν: 'v', χ: 'x', ß: 'ss', æ: 'ae', œ: 'oe', ø: 'o', ł: 'l', đ: 'd', ı: 'i',
};

/** Leetspeak, applied only inside a token that also holds a letter, so plain numbers stay numbers. */
const LEET: Record<string, string> = { '0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '@': 'a', $: 's' };

const CJK_RE = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}]/u;
const LETTER_RE = /\p{L}/u;
const DIGIT_RE = /\p{Nd}/u;
const SKIP_RE = /[\p{Cf}\p{Mn}\p{Me}]/u;
const SPACE_RE = /[\s\p{P}\p{S}\p{Z}\p{Cc}]/u;

interface Folded {
  text: string;
  kind: Kind;
  /** A whitespace character (a Space that `folded` writes as one space per run). */
  white: boolean;
}

const foldCache = new Map<string, Folded[]>();

/** One source character → the folded characters it stands for (usually one; `ß` → `ss`, `ﬁ` → `fi`). */
function foldChar(ch: string): Folded[] {
  const hit = foldCache.get(ch);
  if (hit) return hit;
  const out: Folded[] = [];
  if (!SKIP_RE.test(ch)) {
    const decomposed = ch.normalize('NFKC').normalize('NFKD').replace(/\p{M}/gu, '').toLowerCase();
    for (const c of decomposed) {
      const mapped = CONFUSABLES[c] ?? c;
      for (const m of mapped) out.push({ text: m, kind: kindOf(m), white: /\s/.test(m) });
    }
  }
  if (foldCache.size < 50_000) foldCache.set(ch, out);
  return out;
}

/** foldChar of each ASCII code, made once: most text is ASCII, and this skips a substring and a map lookup per character. */
let asciiFolds: Folded[][] | null = null;
function foldCode(text: string, i: number, code: number, end: number): Folded[] {
  if (code >= 128) return foldChar(text.slice(i, end));
  asciiFolds ??= Array.from({ length: 128 }, (_, c) => foldChar(String.fromCharCode(c)));
  return asciiFolds[code]!;
}

function kindOf(c: string): Kind {
  if (c === '@' || c === '$') return Kind.Leet;
  if (c === "'" || c === '\u2019' || c === '\u02bc') return Kind.Joiner;
  if (CJK_RE.test(c)) return Kind.Cjk;
  if (LETTER_RE.test(c)) return Kind.Letter;
  if (DIGIT_RE.test(c)) return Kind.Digit;
  if (SKIP_RE.test(c)) return Kind.Skip;
  if (SPACE_RE.test(c)) return Kind.Space;
  return Kind.Letter;
}

interface RawToken {
  chars: string[];
  kinds: Kind[];
  starts: number[];
  ends: number[];
}

/** Collapses runs of one character (`kiiiill` → `kil`); terms go through the same function. */
export function collapseRepeats(s: string): string {
  let out = '';
  let prev = '';
  for (const c of s) {
    if (c !== prev) out += c;
    prev = c;
  }
  return out;
}

function finishToken(raw: RawToken): Token | null {
  const hasLetter = raw.kinds.some((k) => k === Kind.Letter);
  let text = '';
  for (let i = 0; i < raw.chars.length; i++) {
    const c = raw.chars[i];
    const k = raw.kinds[i];
    if (hasLetter) text += LEET[c] ?? c;
    else if (k === Kind.Digit) text += c;
  }
  if (text === '') return null;
  return { text: hasLetter ? collapseRepeats(text) : text, start: raw.starts[0], end: raw.ends[raw.ends.length - 1] };
}

/**
 * Joins runs of three or more one-character tokens (`k i l l`, `k.i.l.l`, `k-1-l-l`) when at least two
 * of them are letters: spacing a word out is the commonest evasion, and real prose rarely has such runs.
 */
function joinSpacedLetters(raws: RawToken[]): RawToken[] {
  const out: RawToken[] = [];
  let i = 0;
  while (i < raws.length) {
    let j = i;
    let letters = 0;
    while (j < raws.length && raws[j].chars.length === 1) {
      if (raws[j].kinds[0] === Kind.Letter) letters++;
      j++;
    }
    if (j - i >= 3 && letters >= 2) {
      const merged: RawToken = { chars: [], kinds: [], starts: [], ends: [] };
      for (let k = i; k < j; k++) {
        merged.chars.push(...raws[k].chars);
        merged.kinds.push(...raws[k].kinds);
        merged.starts.push(...raws[k].starts);
        merged.ends.push(...raws[k].ends);
      }
      out.push(merged);
      i = j;
    } else {
      out.push(raws[i]);
      i++;
    }
  }
  return out;
}

export function canonicalize(text: string): CanonicalText {
  let folded = '';
  const fStarts: number[] = [];
  const fEnds: number[] = [];
  let cjk = '';
  const cStarts: number[] = [];
  const cEnds: number[] = [];
  const raws: RawToken[] = [];
  let current: RawToken | null = null;
  let lastWasSpace = true;

  let i = 0;
  while (i < text.length) {
    const code = text.codePointAt(i)!;
    const width = code > 0xffff ? 2 : 1;
    const end = i + width;
    for (const f of foldCode(text, i, code, end)) {
      if (f.kind === Kind.Skip) continue;
      if (f.kind === Kind.Joiner) {
        folded += "'";
        fStarts.push(i);
        fEnds.push(end);
        lastWasSpace = false;
        continue;
      }
      if (f.kind === Kind.Space) {
        // `folded` keeps punctuation for patterns and turns each whitespace run into one space.
        const white = f.white;
        if (!white || !lastWasSpace) {
          folded += white ? ' ' : f.text;
          fStarts.push(i);
          fEnds.push(end);
        }
        lastWasSpace = white;
        if (current) raws.push(current);
        current = null;
        continue;
      }
      lastWasSpace = false;
      for (let u = 0; u < f.text.length; u++) {
        folded += f.text[u];
        fStarts.push(i);
        fEnds.push(end);
      }
      if (f.kind === Kind.Cjk) {
        cjk += f.text;
        for (let u = 0; u < f.text.length; u++) {
          cStarts.push(i);
          cEnds.push(end);
        }
        if (current) raws.push(current);
        current = null;
        continue;
      }
      current ??= { chars: [], kinds: [], starts: [], ends: [] };
      current.chars.push(f.text);
      current.kinds.push(f.kind);
      current.starts.push(i);
      current.ends.push(end);
    }
    i = end;
  }
  if (current) raws.push(current);

  const tokens: Token[] = [];
  for (const raw of joinSpacedLetters(raws)) {
    const t = finishToken(raw);
    if (t) tokens.push(t);
  }
  return {
    folded,
    foldedStarts: Int32Array.from(fStarts),
    foldedEnds: Int32Array.from(fEnds),
    tokens,
    cjk,
    cjkStarts: Int32Array.from(cStarts),
    cjkEnds: Int32Array.from(cEnds),
  };
}

/** The canonical token texts of a lexicon term, through exactly the pipeline the input goes through. */
export function termTokens(term: string): string[] {
  return canonicalize(term).tokens.map((t) => t.text);
}

/** The Han/kana characters of a term (for Chinese/Japanese terms, which have no word boundaries). */
export function termCjk(term: string): string {
  return canonicalize(term).cjk;
}
