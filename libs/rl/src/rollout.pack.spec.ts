/**
 * Packing rollouts for a policy step (packActions, gather, scatter): the action for response token j of a rollout
 * sits at the slot that predicts it (prompt length - 1 + j), targets are the next tokens, padding is masked out,
 * and gather/scatter move per-action values to and from those slots without loss.
 */
import { gather, packActions, scatter } from './rollout';

const rollouts = [
  { prompt: [1, 10, 11], response: [20, 21] },
  { prompt: [1, 12], response: [22, 23, 24, 25] },
  { prompt: [1, 13, 14, 15], response: [] },
];

describe('packActions', () => {
  const packed = packActions(rollouts);
  const { B, T, tokens, mask } = packed.batch;

  it('right-pads every sequence to the longest, masking the padding', () => {
    expect(B).toBe(3);
    expect(T).toBe(6);
    rollouts.forEach((r, b) => {
      const seq = [...r.prompt, ...r.response];
      expect(Array.from(tokens.subarray(b * T, b * T + seq.length))).toEqual(seq);
      expect(Array.from(mask.subarray(b * T, (b + 1) * T))).toEqual(Array.from({ length: T }, (_, t) => (t < seq.length ? 1 : 0)));
    });
  });

  it('puts each response token at the slot that predicts it, with that token as the target', () => {
    expect(Array.from(packed.offsets)).toEqual([0, 2, 6, 6]);
    rollouts.forEach((r, b) => {
      r.response.forEach((tok, j) => {
        const slot = packed.slots[packed.offsets[b]! + j]!;
        expect(slot).toBe(b * T + r.prompt.length - 1 + j);
        expect(packed.targets[slot]).toBe(tok);
        expect(packed.sel[slot]).toBe(1);
      });
    });
    expect(packed.sel.reduce((n, s) => n + s, 0)).toBe(6);
  });

  it('gather and scatter are inverse on the action slots and leave every other slot zero', () => {
    const values = Array.from({ length: packed.slots.length }, (_, i) => i + 0.5);
    const dense = scatter(values, packed.slots, B * T);
    expect(Array.from(gather(dense, packed.slots))).toEqual(values);
    const others = Array.from(dense).filter((_, i) => !packed.slots.includes(i));
    expect(others.every((v) => v === 0)).toBe(true);
  });

  it('keeps at least two positions for a batch of one-token sequences', () => {
    expect(packActions([{ prompt: [1], response: [] }]).batch.T).toBe(2);
  });
});
