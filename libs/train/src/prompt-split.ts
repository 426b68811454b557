/**
 * A deterministic split of preference data by prompt, for the RL loop's independent reward model: a line's side is a
 * hash of its prompt (FNV-1a of the prompt's JSON), so every pair of one prompt lands on the same side, in every run
 * and on every machine, and the independent model never sees a prompt the training reward model learned from. Not a
 * held-out split of pairs within one training run (epoch-order.ts splitHeldOut).
 */

export type PromptSide = 'train' | 'heldout';

/** FNV-1a (32-bit) of a string's UTF-16 code units, as a fraction in [0, 1). */
function hashFraction(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h / 2 ** 32;
}

/** The side of a prompt (any JSON value: chat messages or a string): `heldout` for a `share` of prompts, by hash. */
export function promptSideOf(prompt: unknown, share: number): PromptSide {
  return hashFraction(JSON.stringify(prompt)) < share ? 'heldout' : 'train';
}

/**
 * Preference JSONL with only the lines whose prompt is on `side` (promptSideOf); the other lines become blank, so
 * errors still name the file's line numbers. A line that is not JSON stays on the `train` side, where the trainer
 * reports it. `kept` and `dropped` count the non-blank lines.
 */
export function preferenceLinesOnSide(text: string, side: PromptSide, share: number): { text: string; kept: number; dropped: number } {
  let kept = 0;
  let dropped = 0;
  const lines = text.split('\n').map((raw) => {
    if (raw.trim() === '') return raw;
    let lineSide: PromptSide = 'train';
    try {
      const json: unknown = JSON.parse(raw);
      if (json !== null && typeof json === 'object' && 'prompt' in json) lineSide = promptSideOf(json.prompt, share);
    } catch {
      // not JSON: left for the trainer's error on the train side
    }
    if (lineSide === side) {
      kept++;
      return raw;
    }
    dropped++;
    return '';
  });
  return { text: lines.join('\n'), kept, dropped };
}
