/** mergeDeltas: one delta per choice per run, order and ends kept, inputs untouched. */
import type { TokenDelta } from '@flywheel/contracts';
import { mergeDeltas } from './token-deltas';

const d = (choice: number, text: string, ids: number[], extra: Partial<TokenDelta> = {}): TokenDelta => ({ choice, text, tokenIds: ids, ...extra });
const lp = (id: number) => ({ token: String(id), tokenId: id, logprob: -id, topLogprobs: [] });

describe('mergeDeltas', () => {
  it('joins consecutive deltas of each choice, keeping each choice in order and the frame order of first appearance', () => {
    const input = [d(0, 'Once', [1]), d(1, 'The', [7]), d(0, ' upon', [2]), d(1, ' cat', [8]), d(0, ' a', [3])];
    expect(mergeDeltas(input)).toEqual([d(0, 'Once upon a', [1, 2, 3]), d(1, 'The cat', [7, 8])]);
  });

  it('carries the end of a choice on its merged delta and never merges past it', () => {
    const merged = mergeDeltas([d(0, 'a', [1]), d(0, 'b', [2], { finishReason: 'length' })]);
    expect(merged).toEqual([d(0, 'ab', [1, 2], { finishReason: 'length' })]);
    const after = mergeDeltas([d(0, 'a', [1], { finishReason: 'stop' }), d(0, 'b', [2])]);
    expect(after).toHaveLength(2);
  });

  it('keeps one logprob per token id when merging', () => {
    const [m] = mergeDeltas([d(0, 'x', [4], { logprobs: [lp(4)] }), d(0, 'y', [5], { logprobs: [lp(5)] })]);
    expect(m!.tokenIds).toEqual([4, 5]);
    expect(m!.logprobs!.map((l) => l.tokenId)).toEqual([4, 5]);
  });

  it('does not change the frame it was given', () => {
    const input = [d(0, 'a', [1]), d(0, 'b', [2])];
    const copy = structuredClone(input);
    mergeDeltas(input);
    expect(input).toEqual(copy);
  });
});
