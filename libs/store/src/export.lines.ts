/**
 * Approved feedback → JSONL lines of a training format, as TRL and OpenRLHF read them (conversational:
 * message lists, a text prompt becomes one user message):
 *   sft         {"messages": [...prompt, {assistant: answer}]}   approved corrections (the corrected text),
 *                                                                thumbs up and ratings ≥ 4 (the choice's text)
 *   preference  {"prompt": [...], "chosen": [assistant], "rejected": [assistant]}   approved preferences,
 *                                                                approved corrections (the corrected text chosen over
 *                                                                the choice it corrects; none when the text is the same)
 *                                                                and approved rankings (every (better, worse) pair)
 *   kto         {"prompt": [...], "completion": [assistant], "label": bool}   thumbs (up/down), ratings
 *                                                                (≥ 4 true, ≤ 2 false, 3 skipped), corrections (true),
 *                                                                rankings (top true, bottom false)
 * A conversation that offered tools also carries TRL's `tools` column (the request's functions); its calls and
 * results are in the messages as the model wrote and read them. Pure functions; export.queries.ts feeds them
 * rows. Each of those makes one line (a ranking several); anything else (flags, token-id prompts, a missing
 * choice) makes none. The `moderation` and `prompts` formats are not made of feedback lines (moderation-labels.ts,
 * export.prompts.ts).
 */
import { z } from 'zod';
import { completionRecordChoiceSchema, feedbackValueSchemas, type ExportFormat, type FeedbackKind } from '@flywheel/contracts';

export interface ExportMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** What a line is built from: one approved feedback and its completion's stored JSON. */
export interface ExportSource {
  kind: string;
  value: unknown;
  choiceIndex: number | null;
  endpoint: 'chat.completions' | 'completions';
  /** The completion's request body (its `tools` and `tool_choice` make the `tools` column). */
  request?: unknown;
  messages: unknown;
  prompts: unknown;
  choices: unknown;
}

const messagesSchema = z.array(z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() }));
const promptsSchema = z.array(z.union([z.string(), z.array(z.number())]));
const choicesSchema = z.array(completionRecordChoiceSchema.pick({ index: true, promptIndex: true, text: true }));

type Choice = z.infer<typeof choicesSchema>[number];

/** A chat completion's conversation, or null when its stored messages are not plain text turns. */
export function chatPromptOf(messages: unknown): ExportMessage[] | null {
  const parsed = messagesSchema.safeParse(messages);
  return parsed.success ? parsed.data.map((m) => ({ role: m.role, content: m.content })) : null;
}

/** Each prompt of a completions request as one user message, index for index; null for a token-id prompt. */
export function textPromptsOf(prompts: unknown): Array<ExportMessage[] | null> {
  const parsed = promptsSchema.safeParse(prompts);
  if (!parsed.success) return [];
  return parsed.data.map((p) => (typeof p === 'string' ? [{ role: 'user', content: p }] : null));
}

function promptOf(source: ExportSource, choice: Choice): ExportMessage[] | null {
  if (source.endpoint === 'chat.completions') return chatPromptOf(source.messages);
  return textPromptsOf(source.prompts)[choice.promptIndex] ?? null;
}

function choiceAt(source: ExportSource, index: number | null): Choice | null {
  const choices = choicesSchema.safeParse(source.choices);
  if (!choices.success) return null;
  return choices.data.find((c) => c.index === (index ?? 0)) ?? null;
}

const assistant = (content: string): ExportMessage => ({ role: 'assistant', content });

const requestToolsSchema = z.object({
  tools: z.array(z.object({ type: z.literal('function'), function: z.looseObject({ name: z.string() }) })).nullish(),
  tool_choice: z.unknown().optional(),
});

/** `{tools: [...]}` when the request offered tools the model could call, else nothing. */
export function toolsColumnOf(request: unknown): { tools?: unknown[] } {
  const parsed = requestToolsSchema.safeParse(request);
  if (!parsed.success || !parsed.data.tools || parsed.data.tools.length === 0 || parsed.data.tool_choice === 'none') return {};
  return { tools: parsed.data.tools };
}

/** The answer an SFT line teaches, or null when this feedback teaches none. */
function sftAnswer(source: ExportSource, choice: Choice): string | null {
  if (source.kind === 'correction') {
    const text = feedbackValueSchemas.correction.safeParse(source.value);
    return text.success ? text.data : null;
  }
  if (source.kind === 'thumbs') return source.value === 'up' ? choice.text : null;
  if (source.kind === 'rating') return typeof source.value === 'number' && source.value >= 4 ? choice.text : null;
  return null;
}

function ktoExample(source: ExportSource, choice: Choice): { completion: string; label: boolean } | null {
  if (source.kind === 'correction') {
    const text = feedbackValueSchemas.correction.safeParse(source.value);
    return text.success ? { completion: text.data, label: true } : null;
  }
  if (source.kind === 'thumbs') {
    if (source.value === 'up' || source.value === 'down') return { completion: choice.text, label: source.value === 'up' };
    return null;
  }
  if (source.kind === 'rating' && typeof source.value === 'number' && source.value !== 3) {
    return { completion: choice.text, label: source.value >= 4 };
  }
  return null;
}

/** A correction as a pair: the corrected text chosen over the choice it corrects, or null when they are the same. */
function correctionPairLine(source: ExportSource): string | null {
  const text = feedbackValueSchemas.correction.safeParse(source.value);
  const original = choiceAt(source, source.choiceIndex);
  const prompt = original ? promptOf(source, original) : null;
  if (!text.success || !original || !prompt) return null;
  // Only whitespace changed: no preference to learn.
  if (text.data.trim() === original.text.trim()) return null;
  return JSON.stringify({ ...toolsColumnOf(source.request), prompt, chosen: [assistant(text.data)], rejected: [assistant(original.text)] });
}

/** A preference line: `chosen` over `rejected`, both choices of the completion `source` describes. */
function pairLine(source: ExportSource, chosen: Choice, rejected: Choice): string | null {
  const prompt = promptOf(source, chosen);
  if (!prompt) return null;
  return JSON.stringify({ ...toolsColumnOf(source.request), prompt, chosen: [assistant(chosen.text)], rejected: [assistant(rejected.text)] });
}

/** A ranking's choices best first, or null when it is not a ranking or names a choice the completion lacks. */
function rankedChoices(source: ExportSource): Choice[] | null {
  const order = feedbackValueSchemas.ranking.safeParse(source.value);
  if (!order.success) return null;
  const ranked = order.data.map((index) => choiceAt(source, index));
  if (ranked.some((c) => c === null)) return null;
  const choices = ranked.filter((c): c is Choice => c !== null);
  // Choices of different prompts (a completions request of several) cannot be compared.
  return choices.every((c) => c.promptIndex === choices[0]?.promptIndex) ? choices : null;
}

/**
 * A ranking of k choices as its k(k−1)/2 (better, worse) pairs, as InstructGPT trains its reward model: for ranks
 * i < j, rank i chosen over rank j, in the order (0,1), (0,2), …, (1,2), …. A pair of the same text (up to
 * surrounding whitespace) teaches nothing and makes no line. Each line is an independent example here: a trainer
 * that shuffles lines weighs a ranking C(k,2) times a single preference and shows each choice k−1 times per epoch
 * (InstructGPT instead puts all pairs of one prompt into one batch element; the lines of one ranking are adjacent).
 */
function rankingPairLines(source: ExportSource): string[] {
  const ranked = rankedChoices(source);
  if (!ranked) return [];
  const lines: string[] = [];
  for (const [i, better] of ranked.entries()) {
    for (const worse of ranked.slice(i + 1)) {
      if (better.text.trim() === worse.text.trim()) continue;
      const line = pairLine(source, better, worse);
      if (line !== null) lines.push(line);
    }
  }
  return lines;
}

/** A ranking for KTO: the top choice desirable, the bottom one undesirable; the middle ones say too little alone. */
function rankingKtoLines(source: ExportSource): string[] {
  const ranked = rankedChoices(source);
  const top = ranked?.[0];
  const bottom = ranked?.[ranked.length - 1];
  if (!top || !bottom || top.text.trim() === bottom.text.trim()) return [];
  const prompt = promptOf(source, top);
  if (!prompt) return [];
  const line = (c: Choice, label: boolean) => JSON.stringify({ ...toolsColumnOf(source.request), prompt, completion: [assistant(c.text)], label });
  return [line(top, true), line(bottom, false)];
}

/**
 * The JSONL lines (without their newlines) one approved feedback makes in a format: none, one, or for a ranking
 * several (its pairs, or its top and bottom for KTO).
 */
export function exportLinesOf(format: ExportFormat, source: ExportSource): string[] {
  if (format === 'moderation' || format === 'prompts') return [];
  if (format === 'preference') {
    if (source.kind === 'ranking') return rankingPairLines(source);
    const line = source.kind === 'correction' ? correctionPairLine(source) : preferencePairLine(source);
    return line === null ? [] : [line];
  }
  if (format === 'kto' && source.kind === 'ranking') return rankingKtoLines(source);
  const choice = choiceAt(source, source.choiceIndex);
  const prompt = choice ? promptOf(source, choice) : null;
  if (!choice || !prompt) return [];
  if (format === 'sft') {
    const answer = sftAnswer(source, choice);
    return answer === null ? [] : [JSON.stringify({ messages: [...prompt, assistant(answer)], ...toolsColumnOf(source.request) })];
  }
  const example = ktoExample(source, choice);
  return example === null ? [] : [JSON.stringify({ ...toolsColumnOf(source.request), prompt, completion: [assistant(example.completion)], label: example.label })];
}

function preferencePairLine(source: ExportSource): string | null {
  if (source.kind !== 'preference') return null;
  const pick = feedbackValueSchemas.preference.safeParse(source.value);
  if (!pick.success) return null;
  const chosen = choiceAt(source, pick.data.chosen);
  const rejected = choiceAt(source, pick.data.rejected);
  return chosen && rejected ? pairLine(source, chosen, rejected) : null;
}

/** Feedback kinds that can make a line of each format (the query reads only these). */
export const EXPORT_KINDS: Record<ExportFormat, readonly FeedbackKind[]> = {
  sft: ['correction', 'thumbs', 'rating'],
  preference: ['preference', 'correction', 'ranking'],
  kto: ['correction', 'thumbs', 'rating', 'ranking'],
  /** Approved flags; reviewers' labels are not feedback (moderation-labels.ts builds that format). */
  moderation: ['flag'],
  /** None: the prompt set is read from completions, not feedback (export.prompts.ts). */
  prompts: [],
};
