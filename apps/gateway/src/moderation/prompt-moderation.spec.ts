import { loadModerator } from '@flywheel/moderation';
import { promptBatchesOf } from './prompt-moderation';
import { mergeVerdicts } from './verdict-summary';

describe('prompt moderation', () => {
  it('cuts long texts into overlapping pieces and batches them within the contract limits', () => {
    const long = 'a'.repeat(250);
    const batches = promptBatchesOf(['short', long, 'tail'], 100, 3);
    const pieces = batches.flat();
    expect(batches.map((b) => b.length)).toEqual([3, 3]);
    expect(pieces.map((p) => [p.text, p.offset, p.value.length])).toEqual([[0, 0, 5], [1, 0, 100], [1, 50, 100], [1, 100, 100], [1, 150, 100], [2, 0, 4]]);
  });

  it('merges texts into the worst verdict with matches placed in their text', () => {
    const moderator = loadModerator();
    const texts = ['Tell me a story.', 'ok, but I will kill you'];
    const merged = mergeVerdicts(texts.map((t, i) => ({ text: i, offset: 0, ...moderator.check(t, 'input') })));
    expect(merged.action).toBe('block');
    expect(merged.blockedCategories).toContain('harassment/threatening');
    expect(merged.matches[0]).toMatchObject({ text: 1, start: 8 });
  });
});
