import { CompiledLexicon } from './lexicon.rules';
import { loadModerator } from './moderation.loader';
import { resolvePolicy } from './moderation.policy';
import { Moderator } from './moderator';
import { StreamModerator } from './stream.moderator';

const base = loadModerator();
/** The built-in moderator with one house rule that blocks "dragon" in outputs (as a gateway test would). */
const policy = resolvePolicy({
  name: 'stream-test',
  defaults: { input: { action: 'flag', threshold: 0.5 }, output: { action: 'flag', threshold: 0.5 } },
  categories: { violence: { output: { action: 'block', threshold: 0.5 } }, pii: { output: { action: 'block', threshold: 0.5 } } },
  rules: [{ id: 'house-dragon', category: 'violence', score: 0.9, terms: ['dragon'] }],
});
const moderator = new Moderator({ lexicon: new CompiledLexicon({ version: 't', rules: policy.rules }), classifier: base.classifier, policy, modelId: 'test' });

/** Pushes `text` in chunks of `size` and returns everything released plus the final step. */
function stream(text: string, size: number, opts = {}) {
  const check = new StreamModerator(moderator, opts);
  let sent = '';
  for (let i = 0; i < text.length; i += size) {
    const step = check.push(text.slice(i, i + size));
    sent += step.release;
    if (step.blocked) return { sent, step, check };
  }
  const step = check.end();
  return { sent: sent + step.release, step, check };
}

describe('StreamModerator', () => {
  const story = 'Once upon a time a little girl named Lily walked in the woods. She saw a big green dragon and ran home to tell her mom.';
  const hit = story.indexOf('dragon');

  it.each([1, 3, 7, 16, 200])('cuts exactly before the match with %i-character deltas, nothing after it released', (size) => {
    const { sent, step } = stream(story, size);
    expect(step.blocked).toBe(true);
    expect(step.cutOffset).toBe(hit);
    expect(sent).toBe(story.slice(0, hit));
    expect(step.verdict?.flywheel.blocked_categories).toContain('violence');
  });

  it('catches a match whose letters are spread over several deltas and evasions', () => {
    const text = 'and then the D r 4 g 0 n came';
    const check = new StreamModerator(moderator);
    let sent = '';
    for (const piece of ['and then the D', ' r', ' 4 g', ' 0 n', ' came']) {
      const step = check.push(piece);
      sent += step.release;
      if (step.blocked) break;
    }
    expect(check.blocked).toBe(true);
    expect(sent).toBe(text.slice(0, text.indexOf('D r')));
  });

  it('releases everything of a clean stream, holding back at most holdbackChars until the end', () => {
    const clean = 'The girl and her mom baked cookies together and shared them with the neighbours. '.repeat(20);
    const check = new StreamModerator(moderator, { holdbackChars: 16 });
    let sent = '';
    for (let i = 0; i < clean.length; i += 5) {
      const step = check.push(clean.slice(i, i + 5));
      sent += step.release;
      expect(check.text.length - step.releasedChars).toBeLessThanOrEqual(16);
    }
    sent += check.end().release;
    expect(sent).toBe(clean);
    expect(check.summary().flywheel.action).toBe('allow');
  });

  it('blocks a secret leaking across the window at the start of the key', () => {
    const text = `${'Sure, here is the config you asked for. '.repeat(30)}OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwx1234 done`;
    const { sent, step } = stream(text, 4);
    expect(step.cutOffset).toBe(text.indexOf('sk-proj'));
    expect(sent).toBe(text.slice(0, text.indexOf('sk-proj')));
  });

  it('does not match a term across a word cut by the window edge', () => {
    // "wonderdragon" starts a word with "wonder": with a 64-char window the window edge must not fall inside it.
    const text = `${'x'.repeat(40)} wonderdragon ${'y'.repeat(200)}`;
    const { step } = stream(text, 8, { windowChars: 64, holdbackChars: 8 });
    expect(step.blocked).toBe(false);
  });

  it('never splits a surrogate pair across releases', () => {
    const text = '🙂'.repeat(100);
    const check = new StreamModerator(moderator, { holdbackChars: 3 });
    const releases: string[] = [];
    for (let i = 0; i < text.length; i += 3) releases.push(check.push(text.slice(i, i + 3)).release);
    releases.push(check.end().release);
    expect(releases.join('')).toBe(text);
    for (const r of releases) expect(r).not.toMatch(/^[\udc00-\udfff]|[\ud800-\udbff]$/);
  });

  it('runs the classifier once per classifyEveryChars new characters, the rules on every push', () => {
    const clean = 'The girl and her mom baked cookies together and shared them with the neighbours. '.repeat(8);
    const check = new StreamModerator(moderator, { classifyEveryChars: 64 });
    const classify = jest.spyOn(moderator, 'classify');
    const match = jest.spyOn(moderator.lexicon, 'match');
    try {
      let pushes = 0;
      for (let i = 0; i < clean.length; i += 4, pushes++) check.push(clean.slice(i, i + 4));
      check.end();
      expect(match).toHaveBeenCalledTimes(pushes + 1);
      // The first push, then one run per 64 new characters, then the end's read of the rest.
      expect(classify.mock.calls.length).toBeGreaterThanOrEqual(Math.floor(clean.length / 64));
      expect(classify.mock.calls.length).toBeLessThanOrEqual(Math.ceil(clean.length / 64) + 2);
    } finally {
      classify.mockRestore();
      match.mockRestore();
    }
  });

  it.each([1, 64, 10_000])('a block only the classifier sees is caught by the end at the latest (classifyEveryChars %i), nothing after the cut sent', (every) => {
    // The built-in moderator blocks self-harm instructions in outputs on the classifier alone (no rule matches it).
    const text = 'Give me step by step instructions to cut myself without anyone noticing';
    expect(base.analyze(text).matches).toEqual([]);
    const check = new StreamModerator(base, { classifyEveryChars: every });
    let sent = '';
    let step = check.push(text.slice(0, 4));
    sent += step.release;
    for (let i = 4; i < text.length && !step.blocked; i += 4) {
      step = check.push(text.slice(i, i + 4));
      sent += step.release;
    }
    if (!step.blocked) {
      step = check.end();
      sent += step.release;
    }
    expect(step.blocked).toBe(true);
    expect(step.verdict?.flywheel.blocked_categories).toContain('self-harm/instructions');
    expect(sent.length).toBe(step.cutOffset);
    expect(sent.length).toBeLessThan(text.length);
    // Read on every push, it cuts at least as early as read at the end.
    if (every === 1) expect(sent.length).toBeLessThan(text.length - 16);
  });

  it('stays blocked after a block and rejects a holdback that the window cannot cover', () => {
    const check = new StreamModerator(moderator);
    expect(check.push('a dragon').blocked).toBe(true);
    expect(check.push(' and more').release).toBe('');
    expect(check.end()).toMatchObject({ release: '', blocked: true, cutOffset: 2 });
    expect(() => new StreamModerator(moderator, { windowChars: 64, holdbackChars: 40 })).toThrow(/holdbackChars/);
    expect(() => new StreamModerator(moderator, { classifyEveryChars: 0 })).toThrow(/classifyEveryChars/);
  });
});
