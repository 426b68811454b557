/**
 * Approved feedback → one JSONL line of a training format, as TRL and OpenRLHF read them (conversational:
 * message lists, a text prompt becomes one user message):
 *   sft         {"messages": [...prompt, {assistant: answer}]}   approved corrections (the corrected text),
 *                                                                thumbs up and ratings ≥ 4 (the choice's text)
 *   preference  {"prompt": [...], "chosen": [assistant], "rejected": [assistant]}   approved preferences
 *   kto         {"prompt": [...], "completion": [assistant], "label": bool}   thumbs (up/down), ratings
 *                                                                (≥ 4 true, ≤ 2 false, 3 skipped), corrections (true)
 * A conversation that offered tools also carries TRL's `tools` column (the request's functions); its calls and
 * results are in the messages as the model wrote and read them. Pure functions; export.queries.ts feeds them
 * rows. Anything else (flags, token-id prompts, a missing choice) yields no line.
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

function promptOf(source: ExportSource, choice: Choice): ExportMessage[] | null {
  if (source.endpoint === 'chat.completions') {
    const messages = messagesSchema.safeParse(source.messages);
    return messages.success ? messages.data.map((m) => ({ role: m.role, content: m.content })) : null;
  }
  const prompts = promptsSchema.safeParse(source.prompts);
  const prompt = prompts.success ? prompts.data[choice.promptIndex] : undefined;
  return typeof prompt === 'string' ? [{ role: 'user', content: prompt }] : null;
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
function toolsColumn(source: ExportSource): { tools?: unknown[] } {
  const parsed = requestToolsSchema.safeParse(source.request);
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

/** The JSONL line (without its newline) for one approved feedback, or null when it makes none in this format. */
export function exportLineOf(format: ExportFormat, source: ExportSource): string | null {
  if (format === 'moderation') return null;
  if (format === 'preference') {
    if (source.kind !== 'preference') return null;
    const pick = feedbackValueSchemas.preference.safeParse(source.value);
    if (!pick.success) return null;
    const chosen = choiceAt(source, pick.data.chosen);
    const rejected = choiceAt(source, pick.data.rejected);
    const prompt = chosen ? promptOf(source, chosen) : null;
    if (!chosen || !rejected || !prompt) return null;
    return JSON.stringify({ ...toolsColumn(source), prompt, chosen: [assistant(chosen.text)], rejected: [assistant(rejected.text)] });
  }
  const choice = choiceAt(source, source.choiceIndex);
  const prompt = choice ? promptOf(source, choice) : null;
  if (!choice || !prompt) return null;
  if (format === 'sft') {
    const answer = sftAnswer(source, choice);
    return answer === null ? null : JSON.stringify({ messages: [...prompt, assistant(answer)], ...toolsColumn(source) });
  }
  const example = ktoExample(source, choice);
  return example === null ? null : JSON.stringify({ ...toolsColumn(source), prompt, completion: [assistant(example.completion)], label: example.label });
}

/** Feedback kinds that can make a line of each format (the query reads only these). */
export const EXPORT_KINDS: Record<ExportFormat, readonly FeedbackKind[]> = {
  sft: ['correction', 'thumbs', 'rating'],
  preference: ['preference'],
  kto: ['correction', 'thumbs', 'rating'],
  /** Approved flags; reviewers' labels are not feedback (moderation-labels.ts builds that format). */
  moderation: ['flag'],
};
