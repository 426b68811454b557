/**
 * Every match of a global regex in a text, as `text.matchAll(re)` gives them, without what matchAll costs: it copies
 * the regex for each call (through its species constructor), which was most of the rules' time on the short texts the
 * stream check reads per token. Not a regex engine: the regex runs as written, its lastIndex reset before and after.
 */
export function matchesOf(re: RegExp, text: string): RegExpExecArray[] {
  if (!re.global) throw new Error(`matchesOf needs a global regex (got /${re.source}/${re.flags})`);
  const out: RegExpExecArray[] = [];
  re.lastIndex = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    out.push(m);
    // An empty match would be found again at the same place: step past one character (one code point under `u`).
    if (m[0].length === 0) re.lastIndex = m.index + (re.unicode && (text.codePointAt(m.index) ?? 0) > 0xffff ? 2 : 1);
  }
  re.lastIndex = 0;
  return out;
}
