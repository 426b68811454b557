import { matchesOf } from './regex.matches';

const same = (re: RegExp, text: string) => {
  const want = [...text.matchAll(new RegExp(re.source, re.flags))].map((m) => [m.index, m[0]]);
  expect(matchesOf(re, text).map((m) => [m.index, m[0]])).toEqual(want);
  expect(re.lastIndex).toBe(0);
};

describe('matchesOf', () => {
  it('finds what matchAll finds, in order, and leaves the regex reusable', () => {
    const re = /\bkill(?:s|ed)?\b/giu;
    same(re, 'I will kill you. KILLS, killed, skill');
    same(re, 'nothing here');
    same(/\d{3}/g, '1234567 89 012');
  });

  it('steps past empty matches, by a whole code point under u', () => {
    same(/x*/g, 'axxbx');
    same(/x*/gu, 'a😀xb😀');
    same(/(?=a)/g, 'banana');
  });

  it('refuses a regex without the g flag rather than loop forever', () => {
    expect(() => matchesOf(/a/, 'aaa')).toThrow(/global/);
  });
});
