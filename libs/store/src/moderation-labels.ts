/**
 * Reviewers' moderation labels: writing one (the labelled text and what moderation had decided on it are copied
 * onto the row, so a label stays meaningful however the completion is read later), listing a completion's, and the
 * `moderation` export: the latest label on each text plus every approved `flag` feedback that names a moderation
 * category (the choice it flags, as output). No HTTP here; the admin API parses the body and shapes the answer.
 */
import { sql, type Kysely } from 'kysely';
import { z } from 'zod';
import {
  completionModerationSchema,
  completionRecordChoiceSchema,
  LABEL_CATEGORIES,
  newTimeOrderedId,
  type LabelCategory,
  type ModerationExportLine,
  type ModerationLabelCreateBody,
} from '@flywheel/contracts';
import type { ExportFilters } from './export.queries';
import type { ModerationLabelRow, StoreTables } from './store.tables';

export type LabelFailureCode = 'not_found' | 'invalid_choice' | 'invalid_prompt';
export type LabelOutcome = { ok: true; label: ModerationLabelRow } | { ok: false; code: LabelFailureCode; message: string };

const messagesSchema = z.array(z.object({ role: z.string(), content: z.string() }));
const promptsSchema = z.array(z.union([z.string(), z.array(z.number())]));
const choicesSchema = z.array(completionRecordChoiceSchema.pick({ index: true, text: true }));

/** The categories moderation flagged or blocked in a verdict summary (PII is not the classifier's to learn). */
function hitCategories(verdict: { blockedCategories: string[]; flaggedCategories: string[] } | null | undefined): string[] {
  if (!verdict) return [];
  return [...new Set([...verdict.blockedCategories, ...verdict.flaggedCategories])].filter((c) => c !== 'pii').sort();
}

interface LabelledText {
  text: string;
  direction: 'input' | 'output';
  promptIndex: number | null;
  moderationCategories: string[];
}

type CompletionForLabel = NonNullable<Awaited<ReturnType<typeof loadCompletion>>>;

async function loadCompletion(db: Kysely<StoreTables>, id: string) {
  return db
    .selectFrom('completions')
    .select(['id', 'endpoint', 'messages', 'prompts', 'choices', 'moderation', 'policy_version'])
    .where('id', '=', id)
    .executeTakeFirst();
}

function textOf(c: CompletionForLabel, body: ModerationLabelCreateBody): LabelledText | { code: LabelFailureCode; message: string } {
  const moderation = completionModerationSchema.safeParse(c.moderation);
  if (body.target === 'choice') {
    const choices = choicesSchema.safeParse(c.choices);
    const choice = choices.success ? choices.data.find((ch) => ch.index === body.choice_index) : undefined;
    if (!choice || choice.text.trim() === '') return { code: 'invalid_choice', message: `The completion has no choice ${String(body.choice_index)} with text to label.` };
    const verdict = moderation.success ? moderation.data.output.find((o) => o.index === choice.index) : undefined;
    return { text: choice.text, direction: 'output', promptIndex: null, moderationCategories: hitCategories(verdict) };
  }
  const inputHits = hitCategories(moderation.success ? moderation.data.input : null);
  if (c.endpoint === 'chat.completions') {
    const messages = messagesSchema.safeParse(c.messages);
    const list = messages.success ? messages.data : [];
    const index = body.prompt_index ?? list.map((m) => m.role).lastIndexOf('user');
    const message = list[index];
    if (!message || message.content.trim() === '') return { code: 'invalid_prompt', message: `The conversation has no message ${index} with text to label.` };
    return { text: message.content, direction: 'input', promptIndex: index, moderationCategories: inputHits };
  }
  const prompts = promptsSchema.safeParse(c.prompts);
  const index = body.prompt_index ?? 0;
  const prompt = prompts.success ? prompts.data[index] : undefined;
  if (typeof prompt !== 'string' || prompt.trim() === '') return { code: 'invalid_prompt', message: `The completion has no text prompt ${index} to label.` };
  return { text: prompt, direction: 'input', promptIndex: index, moderationCategories: inputHits };
}

/** A label overturns moderation when it clears a text moderation hit, or names a category moderation missed. */
export function labelOverturns(verdict: 'harmful' | 'not_harmful', categories: readonly string[], moderationCategories: readonly string[]): boolean {
  if (verdict === 'not_harmful') return moderationCategories.length > 0;
  return categories.some((c) => !moderationCategories.includes(c));
}

export async function addModerationLabel(db: Kysely<StoreTables>, actor: string, body: ModerationLabelCreateBody, now: Date = new Date()): Promise<LabelOutcome> {
  const completion = await loadCompletion(db, body.completion_id);
  if (!completion) return { ok: false, code: 'not_found', message: `No completion with id '${body.completion_id}'.` };
  const found = textOf(completion, body);
  if ('code' in found) return { ok: false, ...found };
  const label = await db
    .insertInto('moderation_labels')
    .values({
      id: `ml-${newTimeOrderedId(now.getTime())}`,
      completion_id: completion.id,
      target: body.target,
      choice_index: body.target === 'choice' ? (body.choice_index ?? null) : null,
      prompt_index: found.promptIndex,
      direction: found.direction,
      verdict: body.verdict,
      categories: JSON.stringify(body.categories),
      text: found.text,
      moderation_categories: JSON.stringify(found.moderationCategories),
      overturns: labelOverturns(body.verdict, body.categories, found.moderationCategories),
      policy_version: completion.policy_version,
      actor,
      note: body.note ?? null,
      created_at: now,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  return { ok: true, label };
}

/** Oldest first. */
export async function listModerationLabels(db: Kysely<StoreTables>, completionId: string): Promise<ModerationLabelRow[]> {
  return db.selectFrom('moderation_labels').selectAll().where('completion_id', '=', completionId).orderBy('created_at').orderBy('id').execute();
}

const isLabelCategory = (c: string): c is LabelCategory => (LABEL_CATEGORIES as readonly string[]).includes(c);

/**
 * The `moderation` export: one line per labelled text (its latest label) and per approved flag feedback naming a
 * moderation category on a choice no label covers. Filters apply to the label's or feedback's creation time and
 * policy version. Oldest first.
 */
export async function buildModerationExport(db: Kysely<StoreTables>, filters: ExportFilters): Promise<{ content: string; rowCount: number }> {
  let labels = db.selectFrom('moderation_labels').selectAll();
  if (filters.policyVersion) labels = labels.where('policy_version', '=', filters.policyVersion);
  if (filters.from) labels = labels.where('created_at', '>=', filters.from);
  if (filters.to) labels = labels.where('created_at', '<', filters.to);
  const latest = new Map<string, ModerationLabelRow>();
  for (const row of await labels.orderBy('created_at').orderBy('id').execute()) {
    latest.set(`${row.completion_id}|${row.target}|${row.choice_index ?? ''}|${row.prompt_index ?? ''}`, row);
  }
  const lines: Array<{ at: Date; line: ModerationExportLine }> = [...latest.values()].map((row) => ({
    at: row.created_at,
    line: {
      text: row.text,
      direction: row.direction,
      categories: row.categories.filter(isLabelCategory),
      source: 'reviewer',
      overturned: row.overturns,
      id: row.id,
    },
  }));
  const labelledChoices = new Set([...latest.values()].filter((r) => r.target === 'choice').map((r) => `${r.completion_id}|${r.choice_index ?? ''}`));

  let flags = db
    .selectFrom('feedback as f')
    .innerJoin('completions as c', 'c.id', 'f.completion_id')
    .select(['f.id', 'f.created_at', 'f.value', 'f.choice_index', 'f.completion_id', 'c.choices', 'c.moderation'])
    .where('f.review_status', '=', 'approved')
    .where('f.kind', '=', 'flag');
  if (filters.policyVersion) flags = flags.where('f.policy_version', '=', filters.policyVersion);
  if (filters.from) flags = flags.where('f.created_at', '>=', filters.from);
  if (filters.to) flags = flags.where('f.created_at', '<', filters.to);
  for (const f of await flags.orderBy('f.created_at').orderBy('f.id').execute()) {
    const category = typeof f.value === 'string' ? f.value : '';
    const index = f.choice_index ?? 0;
    if (!isLabelCategory(category) || labelledChoices.has(`${f.completion_id}|${index}`)) continue;
    const choices = choicesSchema.safeParse(f.choices);
    const choice = choices.success ? choices.data.find((c) => c.index === index) : undefined;
    if (!choice || choice.text.trim() === '') continue;
    const moderation = completionModerationSchema.safeParse(f.moderation);
    const hits = hitCategories(moderation.success ? moderation.data.output.find((o) => o.index === index) : null);
    lines.push({
      at: f.created_at,
      line: { text: choice.text, direction: 'output', categories: [category], source: 'flag', overturned: labelOverturns('harmful', [category], hits), id: f.id },
    });
  }
  lines.sort((a, b) => a.at.getTime() - b.at.getTime() || (a.line.id < b.line.id ? -1 : 1));
  return { content: lines.map((l) => `${JSON.stringify(l.line)}\n`).join(''), rowCount: lines.length };
}

/** Labels written after `since` plus moderation flags approved after it (all when null): "is there new moderation data". */
export async function countModerationDataSince(db: Kysely<StoreTables>, since: Date | null): Promise<number> {
  let labels = db.selectFrom('moderation_labels').select((eb) => eb.fn.countAll<string>().as('n'));
  if (since) labels = labels.where('created_at', '>', since);
  let flags = db
    .selectFrom('feedback')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('review_status', '=', 'approved')
    .where('kind', '=', 'flag')
    // Only flags that name a moderation category (`incorrect`, `unhelpful` are not moderation data).
    .where(sql<string>`value #>> '{}'`, 'in', [...LABEL_CATEGORIES]);
  if (since) flags = flags.where('reviewed_at', '>', since);
  return Number((await labels.executeTakeFirstOrThrow()).n) + Number((await flags.executeTakeFirstOrThrow()).n);
}
