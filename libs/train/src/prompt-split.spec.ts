/**
 * The loop's split of preference lines by prompt: deterministic, the same prompt always on one side, the two sides a
 * partition of the lines with line numbers kept, and about `share` of prompts held out.
 */
import { preferenceLinesOnSide, promptSideOf } from './prompt-split';

const line = (prompt: string, chosen: string) => JSON.stringify({ prompt: [{ role: 'user', content: prompt }], chosen: [{ role: 'assistant', content: chosen }], rejected: [{ role: 'assistant', content: 'no' }] });

describe('the prompt split', () => {
  it('puts about `share` of prompts on the held-out side, the same way every time', () => {
    const prompts = Array.from({ length: 2000 }, (_, i) => [{ role: 'user', content: `question ${i}` }]);
    const held = prompts.filter((p) => promptSideOf(p, 0.3) === 'heldout').length;
    expect(held / prompts.length).toBeGreaterThan(0.27);
    expect(held / prompts.length).toBeLessThan(0.33);
    expect(prompts.map((p) => promptSideOf(p, 0.3))).toEqual(prompts.map((p) => promptSideOf(structuredClone(p), 0.3)));
    // A larger share holds out a superset.
    for (const p of prompts) if (promptSideOf(p, 0.3) === 'heldout') expect(promptSideOf(p, 0.5)).toBe('heldout');
  });

  it('splits preference lines into two sides that partition them, every pair of a prompt on one side, line numbers kept', () => {
    const lines = Array.from({ length: 60 }, (_, i) => line(`prompt ${i % 20}`, `answer ${i}`));
    const text = ['', ...lines, 'not json', ''].join('\n');
    const train = preferenceLinesOnSide(text, 'train', 0.4);
    const held = preferenceLinesOnSide(text, 'heldout', 0.4);
    expect(train.kept + held.kept).toBe(61);
    expect(train.kept).toBe(held.dropped);
    expect(held.kept).toBeGreaterThan(0);
    const t = train.text.split('\n');
    const h = held.text.split('\n');
    expect(t).toHaveLength(text.split('\n').length);
    text.split('\n').forEach((raw, i) => {
      if (raw.trim() === '') return;
      // Each line is on exactly one side, at its own line number.
      expect([t[i], h[i]].filter((x) => x === raw)).toHaveLength(1);
    });
    // A prompt's pairs stay together; a line that is not JSON stays on the train side for the trainer to report.
    const sideOf = (prompt: string) => (h.some((x) => x.includes(`"${prompt}"`)) ? 'heldout' : 'train');
    for (let p = 0; p < 20; p++) expect(t.some((x) => x.includes(`"prompt ${p}"`)) && sideOf(`prompt ${p}`) === 'heldout').toBe(false);
    expect(t).toContain('not json');
  });
});
