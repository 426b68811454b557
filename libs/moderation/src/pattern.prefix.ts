/**
 * Partial matching of a lexicon pattern against the end of a streamed text: the earliest offset from which the text
 * is still the beginning of some match, so the stream holds back exactly that and no more. JavaScript regexes cannot
 * say "this could still match if more text came", so the pattern's source is parsed (regexpp, the parser ESLint uses)
 * into a Thompson NFA and the text is run through it, a new thread entering at every offset; a thread alive when the
 * text ends is a match that later text may still complete. Assertions that look past the end (`\b`, `$`) count as
 * satisfiable there. A pattern with features a left-to-right NFA cannot follow (lookarounds, back-references, `v`-flag
 * set operations) or that expands past STATE_LIMIT states compiles to null: the caller then keeps its fixed hold-back.
 * Not the matching itself: CompiledLexicon.match runs the real RegExp on the same folded text.
 */
import { RegExpParser, type AST } from '@eslint-community/regexpp';

/** Expanded counted repeats beyond this many states mean a pattern we do not follow (fixed hold-back instead). */
const STATE_LIMIT = 4_000;

type CharTest = (cp: number) => boolean;

type State =
  | { kind: 'char'; test: CharTest; next: number }
  | { kind: 'split'; outs: number[] }
  | { kind: 'assert'; test: AssertTest; next: number }
  | { kind: 'match' };

/** prev/next: code points either side of the position; -1 before the text's start, null past its end (unknown). */
type AssertTest = (prev: number, next: number | null) => boolean;

class Unsupported extends Error {}

const isWordCp = (cp: number): boolean =>
  (cp >= 0x30 && cp <= 0x39) || (cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a) || cp === 0x5f;
const isDigitCp = (cp: number): boolean => cp >= 0x30 && cp <= 0x39;
const SPACE_RE = /\s/u;
const isSpaceCp = (cp: number): boolean => SPACE_RE.test(String.fromCodePoint(cp));
const isLineTerminator = (cp: number): boolean => cp === 0x0a || cp === 0x0d || cp === 0x2028 || cp === 0x2029;

/**
 * Case-insensitive (the lexicon compiles every pattern with `giu`): a character also matches as its simple lower and
 * upper case. Remembered per code point: the scan asks for every character, thread and pattern.
 */
const variantCache = new Map<number, [number, number]>();
function caseVariants(cp: number): [number, number] {
  let hit = variantCache.get(cp);
  if (hit === undefined) {
    const s = String.fromCodePoint(cp);
    const lower = s.toLowerCase();
    const upper = s.toUpperCase();
    hit = [lower.length === s.length ? lower.codePointAt(0)! : cp, upper.length === s.length ? upper.codePointAt(0)! : cp];
    if (variantCache.size < 65_536) variantCache.set(cp, hit);
  }
  return hit;
}

export class PatternPrefix {
  /** Per state, at the current position: its earliest origin, and the position stamp that origin belongs to. */
  private readonly origin: Int32Array;
  private readonly stamp: Int32Array;
  /** The same for the states the current character moves to (the next position's carried threads). */
  private readonly movedOrigin: Int32Array;
  private readonly movedStamp: Int32Array;
  /** The last position stamp used (stamps only grow, across calls). */
  private tick = 0;

  private constructor(
    private readonly states: State[],
    private readonly start: number,
    /** Can a match's first character be this one? (A new thread is only started where it can.) */
    private readonly first: CharTest,
  ) {
    this.origin = new Int32Array(states.length);
    this.stamp = new Int32Array(states.length);
    this.movedOrigin = new Int32Array(states.length);
    this.movedStamp = new Int32Array(states.length);
  }

  /** The NFA of `source` (compiled as the lexicon does, flags `giu`), or null when it cannot be followed. */
  static compile(source: string): PatternPrefix | null {
    let pattern: AST.Pattern;
    try {
      pattern = new RegExpParser({ ecmaVersion: 2025 }).parsePattern(source, 0, source.length, { unicode: true });
    } catch {
      return null;
    }
    const states: State[] = [];
    try {
      const builder = new Builder(states);
      const match = builder.add({ kind: 'match' });
      const start = builder.alternatives(pattern.alternatives, match);
      return new PatternPrefix(states, start, firstTest(states, start));
    } catch (err) {
      if (err instanceof Unsupported) return null;
      throw err;
    }
  }

  /**
   * The earliest offset in [from, text.length) at which a match could begin that the text so far neither completes
   * nor rules out, i.e. one still alive at its end; null when none is. Offsets are UTF-16 indices into `text`.
   */
  earliestOpen(text: string, from: number): number | null {
    const { states, origin, stamp, movedOrigin, movedStamp } = this;
    // Stamps keep counting across calls, so no array needs clearing; they restart only before they would overflow.
    if (this.tick > 2 ** 30) {
      stamp.fill(0);
      movedStamp.fill(0);
      this.tick = 0;
    }
    let tick = this.tick;
    // The threads ready to consume the character at `pos`, their earliest origins in movedOrigin.
    let active: number[] = [];
    let pos = from;
    let prev = from === 0 ? -1 : text.codePointAt(from - 1 - (from >= 2 && isLowSurrogate(text.charCodeAt(from - 1)) ? 1 : 0))!;
    for (;;) {
      const next = pos < text.length ? text.codePointAt(pos)! : null;
      const starts = next !== null && this.first(next);
      if (next !== null && active.length === 0 && !starts) {
        prev = next;
        pos += next > 0xffff ? 2 : 1;
        continue;
      }
      tick++;
      const closed: number[] = [];
      for (const id of active) this.close(id, movedOrigin[id]!, prev, next, tick, closed);
      if (next === null) {
        this.tick = tick;
        let earliest: number | null = null;
        for (const id of closed) if (earliest === null || origin[id]! < earliest) earliest = origin[id]!;
        return earliest;
      }
      if (starts) this.close(this.start, pos, prev, next, tick, closed);
      active = [];
      for (const id of closed) {
        const s = states[id]!;
        if (s.kind !== 'char' || !s.test(next)) continue;
        const o = origin[id]!;
        if (movedStamp[s.next] !== tick) {
          movedStamp[s.next] = tick;
          movedOrigin[s.next] = o;
          active.push(s.next);
        } else if (o < movedOrigin[s.next]!) movedOrigin[s.next] = o;
      }
      prev = next;
      pos += next > 0xffff ? 2 : 1;
    }
  }

  /** Adds `state` and what its epsilon edges reach at this position to `into` (keeping the earliest origin). */
  private close(state: number, from: number, prev: number, next: number | null, tick: number, into: number[]): void {
    const { states, origin, stamp } = this;
    const stack = [state];
    while (stack.length > 0) {
      const id = stack.pop()!;
      if (stamp[id] === tick) {
        if (origin[id]! <= from) continue;
      } else {
        stamp[id] = tick;
        into.push(id);
      }
      origin[id] = from;
      const s = states[id]!;
      if (s.kind === 'split') stack.push(...s.outs);
      else if (s.kind === 'assert' && s.test(prev, next)) stack.push(s.next);
    }
  }
}

const isLowSurrogate = (code: number) => code >= 0xdc00 && code <= 0xdfff;

/** Thompson construction, back to front: each `add…` returns the entry state of a fragment that continues at `next`. */
class Builder {
  constructor(private readonly states: State[]) {}

  add(state: State): number {
    if (this.states.length >= STATE_LIMIT) throw new Unsupported('too many states');
    this.states.push(state);
    return this.states.length - 1;
  }

  alternatives(alternatives: readonly AST.Alternative[], next: number): number {
    const entries = alternatives.map((a) => this.sequence(a.elements, next));
    return entries.length === 1 ? entries[0]! : this.add({ kind: 'split', outs: entries });
  }

  sequence(elements: readonly AST.Element[], next: number): number {
    let entry = next;
    for (let i = elements.length - 1; i >= 0; i--) entry = this.element(elements[i]!, entry);
    return entry;
  }

  element(e: AST.Element, next: number): number {
    switch (e.type) {
      case 'Character':
      case 'CharacterClass':
      case 'CharacterSet':
        return this.add({ kind: 'char', test: tabled(charTest(e)), next });
      case 'Group':
      case 'CapturingGroup':
        return this.alternatives(e.alternatives, next);
      case 'Quantifier':
        return this.quantifier(e, next);
      case 'Assertion':
        return this.add({ kind: 'assert', test: assertTest(e), next });
      default:
        throw new Unsupported(e.type);
    }
  }

  /** x{min,max}: min copies, then (max − min) optional ones, or a loop when max is unbounded. */
  quantifier(q: AST.Quantifier, next: number): number {
    let entry = next;
    if (q.max === Infinity) {
      const loop = this.add({ kind: 'split', outs: [] });
      const body = this.element(q.element, loop);
      (this.states[loop] as { outs: number[] }).outs.push(body, next);
      entry = loop;
    } else {
      for (let i = q.min; i < q.max; i++) {
        const body = this.element(q.element, entry);
        entry = this.add({ kind: 'split', outs: [body, entry] });
      }
    }
    for (let i = 0; i < q.min; i++) entry = this.element(q.element, entry);
    return entry;
  }
}

/** Every character a match can start with: the char states the start reaches without consuming, assertions passed. */
function firstTest(states: State[], start: number): CharTest {
  const tests: CharTest[] = [];
  const seen = new Set<number>();
  const stack = [start];
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (seen.has(id)) continue;
    seen.add(id);
    const s = states[id]!;
    if (s.kind === 'char') tests.push(s.test);
    else if (s.kind === 'split') stack.push(...s.outs);
    else if (s.kind === 'assert') stack.push(s.next);
  }
  return tabled((cp) => tests.some((t) => t(cp)));
}

/** A character test answered from a table for ASCII: the simulation asks it once per character and thread. */
function tabled(test: CharTest): CharTest {
  const ascii = new Uint8Array(128);
  for (let cp = 0; cp < 128; cp++) ascii[cp] = test(cp) ? 1 : 0;
  return (cp) => (cp < 128 ? ascii[cp] === 1 : test(cp));
}

/** The `i` flag: a character matches when it or its simple lower or upper case does (before any negation). */
function anyCase(test: CharTest): CharTest {
  return (cp) => {
    if (test(cp)) return true;
    const [lower, upper] = caseVariants(cp);
    return (lower !== cp && test(lower)) || (upper !== cp && test(upper));
  };
}

function assertTest(a: AST.Assertion): AssertTest {
  switch (a.kind) {
    case 'word': {
      const want = !a.negate;
      // Past the end the next character is unknown: either answer is still possible.
      return (prev, next) => next === null || ((prev >= 0 && isWordCp(prev)) !== isWordCp(next)) === want;
    }
    case 'start':
      return (prev) => prev === -1;
    case 'end':
      return (_prev, next) => next === null;
    default:
      throw new Unsupported(`${a.kind} assertion`);
  }
}

function charTest(e: AST.Character | AST.CharacterClass | AST.CharacterSet | AST.CharacterClassRange): CharTest {
  switch (e.type) {
    case 'Character': {
      const value = e.value;
      return anyCase((cp) => cp === value);
    }
    case 'CharacterClassRange': {
      const { min, max } = e;
      return anyCase((cp) => cp >= min.value && cp <= max.value);
    }
    case 'CharacterSet':
      return setTest(e);
    case 'CharacterClass': {
      if (e.unicodeSets) throw new Unsupported('v-flag class');
      const tests = e.elements.map((el) => {
        if (el.type !== 'Character' && el.type !== 'CharacterClassRange' && el.type !== 'CharacterSet') throw new Unsupported((el as { type: string }).type);
        return charTest(el);
      });
      const negate = e.negate;
      return (cp) => tests.some((t) => t(cp)) !== negate;
    }
  }
}

function setTest(e: AST.CharacterSet): CharTest {
  let test: CharTest;
  switch (e.kind) {
    case 'any':
      return (cp) => !isLineTerminator(cp);
    case 'digit':
      test = isDigitCp;
      break;
    case 'space':
      test = isSpaceCp;
      break;
    case 'word':
      test = isWordCp;
      break;
    case 'property': {
      if (e.strings) throw new Unsupported('property of strings');
      const re = new RegExp(`^\\p{${e.value === null ? e.key : `${e.key}=${e.value}`}}$`, 'u');
      test = (cp) => re.test(String.fromCodePoint(cp));
      break;
    }
  }
  const negate = e.negate;
  const cased = anyCase(test);
  return (cp) => cased(cp) !== negate;
}
