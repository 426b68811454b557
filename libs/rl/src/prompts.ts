/**
 * The prompts RL trains and evaluates on, read from the flywheel's own exports: every line's prompt of a
 * preference (`prompt`), KTO (`prompt`) or SFT (`messages` up to the last assistant turn) export, or a plain
 * `{"prompt": "text"}` line; duplicates and prompts without a user turn dropped (first kept); a line's `reference`
 * columns (or `answer`) kept beside its prompt for verifiable rewards. Plus the seeded train / held-out split the PPO and
 * eval jobs share. Not tokenization (the trainers do that with the policy's chat template).
 */
import { z } from 'zod';
import { rewardReferenceSchema, type RewardReference } from '@flywheel/contracts';
import { heldOutCount, seededPermutation } from '@flywheel/train';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}
export type Prompt = ChatMessage[];

const message = z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() });
const lineSchema = z.union([
  z.object({ prompt: z.array(message).min(1) }),
  z.object({ prompt: z.string().min(1) }),
  z.object({ messages: z.array(message).min(1) }),
]);
/** A line's reference columns for verifiable rewards: its `reference` object, or its `answer` as reference.answer. */
const referenceSchema = z.object({ reference: rewardReferenceSchema.optional(), answer: z.union([z.string(), z.number()]).optional() });

/** Prompts with the reference columns their lines carried (undefined where none), index for index. */
export interface PromptSet {
  prompts: Prompt[];
  references: Array<RewardReference | undefined>;
}

/** Prompts of a JSONL text; `source` names it in errors. Throws on a malformed line or when none is found. */
export function parsePrompts(text: string, source: string): Prompt[] {
  return parsePromptSet(text, source).prompts;
}

/** As parsePrompts, keeping each kept prompt's reference columns (a duplicate prompt keeps the first line's). */
export function parsePromptSet(text: string, source: string): PromptSet {
  const out: Prompt[] = [];
  const references: Array<RewardReference | undefined> = [];
  const seen = new Set<string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '') return;
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch {
      throw new Error(`${source}:${i + 1}: not JSON`);
    }
    const r = lineSchema.safeParse(json);
    if (!r.success) throw new Error(`${source}:${i + 1}: expected {"prompt": [messages] | "text"} or {"messages": [...]}`);
    let prompt: Prompt;
    if ('messages' in r.data) {
      const msgs = r.data.messages.map((m) => ({ role: m.role, content: m.content }));
      let end = msgs.length;
      while (end > 0 && msgs[end - 1].role === 'assistant') end--;
      prompt = msgs.slice(0, end);
    } else if (typeof r.data.prompt === 'string') {
      prompt = [{ role: 'user', content: r.data.prompt }];
    } else {
      prompt = r.data.prompt.map((m) => ({ role: m.role, content: m.content }));
    }
    // A prompt without a user turn (only a system message) asks nothing: the policy would answer a template's blank.
    if (!prompt.some((m) => m.role === 'user')) return;
    const key = JSON.stringify(prompt);
    if (seen.has(key)) return;
    seen.add(key);
    out.push(prompt);
    const ref = referenceSchema.safeParse(json);
    if (!ref.success) throw new Error(`${source}:${i + 1}: \`reference\` must be an object of strings and numbers, \`answer\` a string or number`);
    const columns = { ...(ref.data.answer !== undefined ? { answer: ref.data.answer } : {}), ...(ref.data.reference ?? {}) };
    references.push(Object.keys(columns).length > 0 ? columns : undefined);
  });
  if (out.length === 0) throw new Error(`${source}: no prompt found`);
  return { prompts: out, references };
}

/**
 * A seeded split: `heldout` of the prompts (at least one when > 0 and there are two or more) never trained on.
 * The same (prompts, heldout, seed) always gives the same split, so the eval job can rebuild it.
 */
export function splitPrompts<T = Prompt>(prompts: readonly T[], heldout: number, seed: number): { train: T[]; heldout: T[] } {
  const order = seededPermutation(prompts.length, seed, 0x5eed);
  const n = heldOutCount(prompts.length, heldout);
  return { heldout: order.slice(0, n).map((i) => prompts[i]), train: order.slice(n).map((i) => prompts[i]) };
}
