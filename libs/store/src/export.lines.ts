/**
 * Approved feedback → one JSONL line of a training format, as TRL and OpenRLHF read them (conversational:
 * message lists, a text prompt becomes one user message):
 *   sft         {"messages": [...prompt, {assistant: answer}]}   approved corrections (the corrected text),
 *                                                                thumbs up and ratings ≥ 4 (the choice's text)
 *   preference  {"prompt": [...], "chosen": [assistant], "rejected": [assistant]}   approved preferences, and
 *                                                                approved corrections (the corrected text chosen over
 *                                                                the choice it corrects; none when the text is the same)
 *   kto         {"prompt": [...], "completion": [assistant], "label": bool}   thumbs (up/down), ratings
 *                                                                (≥ 4 true, ≤ 2 false, 3 skipped), corrections (true)
 * A conversation that offered tools also carries TRL's `tools` column (the request's functions); its calls and
 * results are in the messages as the model wrote and read them. Pure functions; export.queries.ts feeds them
 * rows. Anything else (flags, token-id prompts, a missing choice) yields no line. The `moderation` and `prompts`
 * formats are not made of feedback lines (moderation-labels.ts, export.prompts.ts).
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

/** The JSONL line (without its newline) for one approved feedback, or null when it makes none in this format. */
export function exportLineOf(format: ExportFormat, source: ExportSource): string | null {
  if (format === 'moderation' || format === 'prompts') return null;
  if (format === 'preference') {
    if (source.kind === 'correction') return correctionPairLine(source);
    if (source.kind !== 'preference') return null;
    const pick = feedbackValueSchemas.preference.safeParse(source.value);
    if (!pick.success) return null;
    const chosen = choiceAt(source, pick.data.chosen);
    const rejected = choiceAt(source, pick.data.rejected);
    const prompt = chosen ? promptOf(source, chosen) : null;
    if (!chosen || !rejected || !prompt) return null;
    return JSON.stringify({ ...toolsColumnOf(source.request), prompt, chosen: [assistant(chosen.text)], rejected: [assistant(rejected.text)] });
  }
  const choice = choiceAt(source, source.choiceIndex);
  const prompt = choice ? promptOf(source, choice) : null;
  if (!choice || !prompt) return null;
  if (format === 'sft') {
    const answer = sftAnswer(source, choice);
    return answer === null ? null : JSON.stringify({ messages: [...prompt, assistant(answer)], ...toolsColumnOf(source.request) });
  }
  const example = ktoExample(source, choice);
  return example === null ? null : JSON.stringify({ ...toolsColumnOf(source.request), prompt, completion: [assistant(example.completion)], label: example.label });
}

/** Feedback kinds that can make a line of each format (the query reads only these). */
export const EXPORT_KINDS: Record<ExportFormat, readonly FeedbackKind[]> = {
  sft: ['correction', 'thumbs', 'rating'],
  preference: ['preference', 'correction'],
  kto: ['correction', 'thumbs', 'rating'],
  /** Approved flags; reviewers' labels are not feedback (moderation-labels.ts builds that format). */
  moderation: ['flag'],
  /** None: the prompt set is read from completions, not feedback (export.prompts.ts). */
  prompts: [],
};
