/**
 * Moderation of generated text as it streams: the caller pushes each delta, the checker analyses the text around
 * it and says what may be sent now. The rules (lexicon terms and patterns, PII) see every push, from where the last
 * push's hold-back began (no blocking match can start earlier; never more than half a window back), so any match up
 * to half a window long is found the moment it completes; the stream holds
 * back only the tail where a blocking rule or PII could still begin (stream.holdback.ts: a prefix of a term, the start
 * of a pattern match still open, a run of digits), at most `holdbackChars`, so a rule-driven block cuts at the exact
 * start of the match and nothing from the match on is released, while safe text goes out at once. The classifier,
 * which has no span (its block cuts at what was already sent) and costs most, reads the whole window once every
 * `classifyEveryChars` new characters (its window reaches back over all it has not read) and once more at the end
 * before the held tail goes out; between its runs its last answer stands. Those runs also apply every rule to the
 * whole window, which is where a multi-word match of a rule that only flags (no hold-back is kept for it) is found. Not an I/O wrapper: the gateway owns the SSE stream, this only decides.
 *
 *   const check = new StreamModerator(moderator, { direction: 'output' });
 *   for await (const delta of tokens) {
 *     const step = check.push(delta);
 *     send(step.release);
 *     if (step.blocked) return finish('content_filter');
 *   }
 *   send(check.end().release);
 */
import { ALL_MODERATION_CATEGORIES, type AnyModerationCategory, type ModerationDirection, type PiiEntity, type RuleMatch } from '@flywheel/contracts';
import { blocks, decide } from './moderation.policy';
import { PARENT_CATEGORY, type Analysis, type Moderator, type TextVerdict } from './moderator';
import { StreamHoldback, type HoldbackProgress } from './stream.holdback';
import { canonicalize, type CanonicalText } from './text.normalize';

/** The hold-back rules are compiled once per moderator and direction (a stream is opened per choice). */
const holdbacks = new WeakMap<Moderator, Map<ModerationDirection, StreamHoldback>>();
function holdbackFor(moderator: Moderator, direction: ModerationDirection): StreamHoldback {
  let byDirection = holdbacks.get(moderator);
  if (!byDirection) holdbacks.set(moderator, (byDirection = new Map()));
  let h = byDirection.get(direction);
  if (!h) byDirection.set(direction, (h = new StreamHoldback(moderator, direction)));
  return h;
}

export interface StreamModeratorOptions {
  /** Policy column to apply; generated text is `output`. */
  direction?: ModerationDirection;
  /** Characters of accumulated text each check looks at (the sliding window). */
  windowChars?: number;
  /**
   * The most characters kept back from release until later text shows they do not start a match; the
   * hold-back itself is only the tail that could (see stream.holdback.ts), or all of this when a rule's
   * start cannot be read.
   */
  holdbackChars?: number;
  /**
   * New characters between classifier runs (1: every push). Text the classifier has not yet read may be released
   * (the rules have read it); a classifier block cuts at what was sent, so this bounds what one can let through.
   */
  classifyEveryChars?: number;
}

export const STREAM_DEFAULTS = { windowChars: 512, holdbackChars: 64, classifyEveryChars: 64 } as const;

export interface StreamStep {
  /** Text to send now, continuing exactly where the previous step's release ended. */
  release: string;
  blocked: boolean;
  /**
   * When blocked: offset (UTF-16, into the whole accumulated text) of the first character that must not
   * be sent: the start of the earliest blocking rule match or PII span, or, for a block the classifier
   * alone decided (it has no span), the end of what had been released. It can be below `releasedChars`
   * only if a match started more than `holdbackChars` back.
   */
  cutOffset: number | null;
  /** Total characters released so far, this step included. */
  releasedChars: number;
  /** The window's verdict when it blocked (categories, scores, matches with whole-text offsets). */
  verdict: TextVerdict | null;
}

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff;
const isLowSurrogate = (code: number) => code >= 0xdc00 && code <= 0xdfff;

export class StreamModerator {
  private readonly direction: ModerationDirection;
  private readonly windowChars: number;
  private readonly holdbackChars: number;
  private readonly classifyEveryChars: number;
  private accumulated = '';
  /** The classifier's last answer, and how much of the text it had read. */
  private probs: ArrayLike<number> | null = null;
  private classifiedUpTo = 0;
  private readonly progress: HoldbackProgress = { patternsFrom: 0 };
  /**
   * Where the last push's hold-back began: no blocking match can start before it (later text only rules more out),
   * so the next push's rules read from there; null when the hold-back could not be read (they read half a window).
   */
  private openFrom: number | null = 0;
  private released = 0;
  private cut: number | null = null;
  private blockVerdict: TextVerdict | null = null;
  private readonly worst: Analysis = { scores: {} as Analysis['scores'], classifierScores: {}, matches: [], pii: [] };
  private readonly seen = new Set<string>();
  private readonly holdback: StreamHoldback;

  constructor(
    private readonly moderator: Moderator,
    options: StreamModeratorOptions = {},
  ) {
    this.direction = options.direction ?? 'output';
    this.windowChars = options.windowChars ?? STREAM_DEFAULTS.windowChars;
    this.holdbackChars = options.holdbackChars ?? STREAM_DEFAULTS.holdbackChars;
    this.classifyEveryChars = options.classifyEveryChars ?? STREAM_DEFAULTS.classifyEveryChars;
    this.holdback = holdbackFor(moderator, this.direction);
    if (!(this.windowChars >= 32)) throw new Error(`windowChars must be at least 32 (got ${this.windowChars})`);
    if (!(this.holdbackChars >= 0 && this.holdbackChars < this.windowChars / 2)) {
      throw new Error(`holdbackChars must be in [0, windowChars / 2) (got ${this.holdbackChars})`);
    }
    if (!(Number.isInteger(this.classifyEveryChars) && this.classifyEveryChars >= 1)) {
      throw new Error(`classifyEveryChars must be a positive integer (got ${this.classifyEveryChars})`);
    }
  }

  get text(): string {
    return this.accumulated;
  }

  get blocked(): boolean {
    return this.cut !== null;
  }

  push(delta: string): StreamStep {
    if (this.cut !== null || delta.length === 0) return this.step('');
    const before = this.accumulated.length;
    this.accumulated += delta;
    const classify = this.probs === null || this.accumulated.length - this.classifiedUpTo >= this.classifyEveryChars;
    const checked = this.check(before, classify);
    if (checked.blocked) return checked.step;
    // Never more than holdbackChars back; less where nothing in the tail could still start a blocking match.
    const fixed = this.accumulated.length - this.holdbackChars;
    const suspicious = this.holdback.holdFrom(this.accumulated, checked.window, this.progress);
    this.openFrom = suspicious;
    let upTo = Math.max(this.released, suspicious === null ? fixed : Math.max(fixed, suspicious));
    if (upTo > this.released && upTo < this.accumulated.length && isHighSurrogate(this.accumulated.charCodeAt(upTo - 1))) upTo--;
    const release = this.accumulated.slice(this.released, upTo);
    this.released = upTo;
    return this.step(release);
  }

  /**
   * The stream ended: the rules already read everything, and the classifier reads what it has not yet before the
   * held-back tail goes out (a block there cuts it, as on a push).
   */
  end(): StreamStep {
    if (this.cut !== null) return this.step('');
    if (this.classifiedUpTo < this.accumulated.length) {
      const checked = this.check(this.accumulated.length, true);
      if (checked.blocked) return checked.step;
    }
    const release = this.accumulated.slice(this.released);
    this.released = this.accumulated.length;
    return this.step(release);
  }

  /**
   * Analyses the text around what came after `before` (the rules' half window, or the classifier's whole window) and
   * applies the policy; on a block cuts the stream and says what may still go out.
   */
  private check(before: number, classify: boolean): { blocked: true; step: StreamStep } | { blocked: false; window: { start: number; canonical: CanonicalText } } {
    // The classifier's window reaches back past everything it has not read yet, however far apart its runs are.
    const start = classify ? this.windowStart(Math.min(before, this.classifiedUpTo)) : this.rulesStart(before);
    const window = this.accumulated.slice(start);
    const canonical = canonicalize(window);
    if (classify) {
      this.probs = this.moderator.classify(canonical);
      this.classifiedUpTo = this.accumulated.length;
    }
    const passed = { blocked: false as const, window: { start, canonical } };
    const found = this.moderator.findings(window, canonical);
    // Between classifier runs, a push in which the rules and detectors find nothing scores the classifier's last
    // answer alone: no more than the push that ran it, which did not block (the policy blocks at a score at or over a
    // threshold) and was remembered. Most pushes of safe text end here.
    if (!classify && found.matches.length === 0 && found.pii.length === 0) return passed;
    const analysis = shift(this.moderator.scoreFindings(found, this.probs!), start);
    this.remember(analysis, classify);
    // Only the action is needed on a push; the full verdict (result, record shape) is built for a block alone.
    if (decide(this.moderator.policy, this.direction, analysis.scores).action !== 'block') return passed;
    const verdict = this.moderator.verdict(analysis, this.direction);
    const cut = Math.min(this.firstBlockingSpan(analysis) ?? this.released, this.accumulated.length);
    const release = cut > this.released ? this.accumulated.slice(this.released, cut) : '';
    this.released = Math.max(this.released, cut);
    this.cut = cut;
    this.blockVerdict = verdict;
    return { blocked: true, step: this.step(release) };
  }

  /** The worst of every window (max score per category, all matches): for the completion record. */
  summary(): TextVerdict {
    if (this.blockVerdict) return this.blockVerdict;
    if (Object.keys(this.worst.scores).length === 0) return this.moderator.check('', this.direction);
    return this.moderator.verdict(this.worst, this.direction);
  }

  /**
   * The classifier's window: at least a whole window back, and far enough that any match up to half a window long
   * that ends in the new text lies wholly inside; moved forward to a word start so a cut word ("s|kill you") cannot
   * match.
   */
  private windowStart(before: number): number {
    let start = Math.max(0, Math.min(this.accumulated.length - this.windowChars, before - Math.floor(this.windowChars / 2)));
    if (start > 0 && !/\s/.test(this.accumulated[start - 1])) {
      const ws = this.accumulated.slice(start, start + 64).search(/\s/);
      if (ws >= 0) start += ws + 1;
    }
    if (start > 0 && isLowSurrogate(this.accumulated.charCodeAt(start))) start++;
    return start;
  }

  /**
   * The rules' window: a blocking match that ends in the new text began at or after the last hold-back's start (or in
   * the new text), so that is where they read, moved back to the start of its word so the word reads as in the whole
   * text; never more than half a window back. Usually the last word or two, not the window.
   */
  private rulesStart(before: number): number {
    const half = Math.max(0, before - Math.floor(this.windowChars / 2));
    if (this.openFrom === null) return this.windowStart(before);
    let start = Math.max(half, Math.min(before, this.openFrom));
    while (start > half && !/\s/.test(this.accumulated[start - 1]!)) start--;
    if (start > half || start === 0 || /\s/.test(this.accumulated[start - 1]!)) return start;
    return this.windowStart(before);
  }

  private firstBlockingSpan(analysis: Analysis): number | null {
    const { policy } = this.moderator;
    let first: number | null = null;
    const consider = (category: AnyModerationCategory, score: number, start: number) => {
      const parent = PARENT_CATEGORY[category as keyof typeof PARENT_CATEGORY];
      const blocking = blocks(policy, this.direction, category, score) || (parent !== undefined && blocks(policy, this.direction, parent, score));
      if (blocking && (first === null || start < first)) first = start;
    };
    for (const m of analysis.matches) consider(m.category, m.score, m.start);
    for (const p of analysis.pii) consider('pii', 1, p.start);
    return first;
  }

  /** `classified`: the classifier ran for this analysis (between its runs its scores repeat the last run's). */
  private remember(a: Analysis, classified: boolean): void {
    const worst = this.worst.scores;
    for (const c of ALL_MODERATION_CATEGORIES) {
      const s = a.scores[c];
      if (!(worst[c] >= s)) worst[c] = s;
    }
    if (classified) {
      for (const [c, s] of Object.entries(a.classifierScores) as Array<[AnyModerationCategory, number]>) {
        this.worst.classifierScores[c] = Math.max(this.worst.classifierScores[c] ?? 0, s);
      }
    }
    for (const m of a.matches) {
      const key = `m:${m.rule}:${m.start}:${m.end}`;
      if (!this.seen.has(key)) this.worst.matches.push(m), this.seen.add(key);
    }
    for (const p of a.pii) {
      const key = `p:${p.type}:${p.start}:${p.end}`;
      if (!this.seen.has(key)) this.worst.pii.push(p), this.seen.add(key);
    }
  }

  private step(release: string): StreamStep {
    return { release, blocked: this.cut !== null, cutOffset: this.cut, releasedChars: this.released, verdict: this.blockVerdict };
  }
}

function shift(a: Analysis, by: number): Analysis {
  if (by === 0) return a;
  const matches: RuleMatch[] = a.matches.map((m) => ({ ...m, start: m.start + by, end: m.end + by }));
  const pii: PiiEntity[] = a.pii.map((p) => ({ ...p, start: p.start + by, end: p.end + by }));
  return { ...a, matches, pii };
}
