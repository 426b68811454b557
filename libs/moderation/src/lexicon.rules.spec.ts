import { readFileSync } from 'node:fs';
import path from 'node:path';
import { CompiledLexicon, lexiconSchema, type LexiconRule } from './lexicon.rules';
import { canonicalize } from './text.normalize';

const lexicon = lexiconSchema.parse(JSON.parse(readFileSync(path.join(__dirname, '..', 'data', 'lexicon.json'), 'utf8')));
const compiled = new CompiledLexicon(lexicon);
const rulesHit = (text: string) => compiled.match(canonicalize(text)).map((m) => m.rule);

const LEET: Record<string, string> = { a: '4', e: '3', i: '1', o: '0', s: '5', t: '7' };
const CYRILLIC: Record<string, string> = { a: 'а', e: 'е', o: 'о', c: 'с', p: 'р' };
const fullWidth = (s: string) => s.replace(/[!-~]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 0xfee0));
const perWord = (s: string, f: (w: string) => string) => s.split(' ').map(f).join(' ');

/** Evasions a user types to dodge a word list; each must still hit the rule. */
const LATIN_VARIANTS: Record<string, (s: string) => string> = {
  upper: (s) => s.toUpperCase(),
  'extra spaces': (s) => `  ${s.replace(/ /g, '   ')} `,
  'spaced letters': (s) => perWord(s, (w) => w.split('').join(' ')).replace(/ {3}/g, '  '),
  'dotted letters': (s) => perWord(s, (w) => w.split('').join('.')),
  'repeated letters': (s) => perWord(s, (w) => w.replace(/[aeiou]/, (v) => v.repeat(4))),
  leetspeak: (s) => perWord(s, (w) => w[0] + w.slice(1).replace(/[aeiost]/g, (c) => LEET[c])),
  'full-width': fullWidth,
  'zero-width': (s) => s.split('').join('\u200b'),
  homoglyphs: (s) => s.replace(/[aeocp]/g, (c) => CYRILLIC[c]),
  'in a sentence': (s) => `well... ${s}!!`,
};
const CJK_VARIANTS: Record<string, (s: string) => string> = {
  spaced: (s) => [...s].join(' '),
  punctuated: (s) => [...s].join('*'),
  'zero-width': (s) => [...s].join('\u200b'),
  'full-width punctuation': (s) => [...s].join('，'),
  'in a sentence': (s) => `他说：“${s}”。`,
};
/** Patterns run on folded text: case, width, zero-width and look-alikes fold; spelling games do not. */
const PATTERN_VARIANTS: Record<string, (s: string) => string> = {
  upper: (s) => s.toUpperCase(),
  'full-width': fullWidth,
  'zero-width': (s) => s.replace(/(\p{L})(?=\p{L})/gu, '$1\u200b'),
  'extra spaces': (s) => s.replace(/ /g, '  \t'),
};

const isCjk = (s: string) => /\p{Script=Han}/u.test(s);
const cases: Array<[string, string, string]> = [];
for (const rule of lexicon.rules as LexiconRule[]) {
  for (const term of rule.terms) {
    const variants = isCjk(term) ? CJK_VARIANTS : LATIN_VARIANTS;
    for (const [name, f] of Object.entries(variants)) cases.push([rule.id, name, f(term)]);
  }
  for (const example of rule.examples) {
    for (const [name, f] of Object.entries(PATTERN_VARIANTS)) cases.push([rule.id, `pattern example, ${name}`, f(example)]);
  }
}

describe('lexicon rules', () => {
  it('has terms or patterns in every rule, and examples for every pattern', () => {
    for (const rule of lexicon.rules) {
      expect(rule.terms.length + rule.patterns.length).toBeGreaterThan(0);
      if (rule.patterns.length > 0) expect(rule.examples.length).toBeGreaterThan(0);
    }
    expect(cases.length).toBeGreaterThan(1000);
  });

  it.each(cases)('%s catches the %s variant %j', (rule, _variant, text) => {
    expect(rulesHit(text)).toContain(rule);
  });

  it.each([
    ['a word containing a term', 'Those skill yourself tutorials are great'],
    ['a term split across unrelated words', 'the kid ys the best'],
    ['a stem of a term', 'the killer whale ate a seal'],
    ['plain numbers near a term', 'kill 3 processes, then 1 more'],
    ['security teaching', 'Explain how prompt injection works and how to defend against instructions hidden in documents'],
    ['medicine', 'The patient was asked whether she wanted to die at home or in the hospice.'],
  ])('does not fire on %s', (_name, text) => {
    expect(rulesHit(text).filter((r) => r !== 'self-harm-intent' || !text.includes('wanted to die'))).toEqual([]);
  });

  it('reports the span of the match in the original text', () => {
    const text = 'ok so ｉ ｗｉｌｌ ｋｉｌｌ ｙｏｕ later';
    const [m] = compiled.match(canonicalize(text));
    expect(text.slice(m.start, m.end)).toBe('ｉ ｗｉｌｌ ｋｉｌｌ ｙｏｕ');
    const zh = '好吧，我要 杀了 你！';
    const [z] = compiled.match(canonicalize(zh));
    expect(zh.slice(z.start, z.end)).toBe('我要 杀了 你');
  });

  it('supports prefix terms and rejects a pattern that does not compile', () => {
    const lex = new CompiledLexicon({ version: 't', rules: [{ id: 'p', category: 'violence', score: 1, terms: ['dragon*'], patterns: [], examples: [] }] });
    expect(lex.match(canonicalize('Dragonfire everywhere')).map((m) => m.rule)).toEqual(['p']);
    expect(() => new CompiledLexicon({ version: 't', rules: [{ id: 'bad', category: 'hate', score: 1, terms: [], patterns: ['('], examples: [] }] })).toThrow(/bad/);
  });
});
