import { canonicalize, termTokens } from './text.normalize';

const words = (s: string) => canonicalize(s).tokens.map((t) => t.text);

describe('canonicalize', () => {
  it('folds case, full-width letters, diacritics and Cyrillic look-alikes to one form', () => {
    expect(words('KILL')).toEqual(['kil']);
    expect(words('ｋｉｌｌ')).toEqual(['kil']);
    expect(words('kíll')).toEqual(['kil']);
    expect(words('kіll')).toEqual(['kil']); // Cyrillic і
  });

  it('drops zero-width characters inside a word instead of splitting it', () => {
    expect(words('k\u200bi\u200cl\u200dl\ufeff you')).toEqual(['kil', 'you']);
  });

  it('joins spaced-out letters and collapses repeated letters', () => {
    expect(words('k i l l  y o u')).toEqual(['kilyou']);
    expect(words('k.i.l.l')).toEqual(['kil']);
    expect(words('kiiiiilllll')).toEqual(['kil']);
  });

  it('reads leetspeak only inside words, leaving numbers alone', () => {
    expect(words('k1ll y0u')).toEqual(['kil', 'you']);
    expect(words('a$$')).toEqual(['as']);
    expect(words('room 101 at 5pm')).toEqual(['rom', '101', 'at', 'spm']);
  });

  it('keeps Han characters in their own stream without separators', () => {
    const c = canonicalize('杀 了*你\u200b!');
    expect(c.cjk).toBe('杀了你');
    expect(c.tokens).toEqual([]);
  });

  it('maps every token back to its span in the original text', () => {
    const text = 'Hey ｋｉｌｌ you';
    const [, kill, you] = canonicalize(text).tokens;
    expect(text.slice(kill.start, kill.end)).toBe('ｋｉｌｌ');
    expect(text.slice(you.start, you.end)).toBe('you');
    const emoji = '😀 k i l l';
    const joined = canonicalize(emoji).tokens[0];
    expect(emoji.slice(joined.start, joined.end)).toBe('k i l l');
  });

  it('canonicalises terms through the same pipeline', () => {
    expect(termTokens("I'll KILL you")).toEqual(['il', 'kil', 'you']);
  });
});
