/**
 * The `prompts` export: the RL prompt set from live traffic. One `{"prompt": [...messages]}` line (with TRL's `tools`
 * column when the request offered tools) per distinct prompt of the recorded completions, oldest first: a chat
 * conversation as its messages, each text prompt of a completions request as one user message; token-id prompts
 * skipped. libs/rl parsePromptSet reads it as it reads the prompts of the other formats.
 *
 * Not gated on review approval, by choice: a prompt is no training target (the policy writes the answers and the
 * reward model scores them), every recorded prompt passed the input moderation check (a blocked prompt is refused
 * before generation and never recorded), and approval would shrink the set to the few conversations that drew
 * feedback. What moderation and reviewers said still counts: a prompt moderation flagged is left out unless a
 * reviewer's latest label on it says not_harmful; one a reviewer labelled harmful, one in which moderation found
 * PII (secrets, contact details), one of a failed request and one without a user turn are left out.
 */
import type { Kysely } from 'kysely';
import { completionModerationSchema, type ModerationLabelVerdict } from '@flywheel/contracts';
import { chatPromptOf, textPromptsOf, toolsColumnOf, type ExportMessage } from './export.lines';
import type { ExportFilters } from './export.queries';
import type { StoreTables } from './store.tables';

const BATCH = 1_000;

/** What moderation decided on a request's input, as far as the prompt set cares. */
export interface InputVerdict {
  action: 'allow' | 'flag' | 'block';
  /** PII entities found in the input. */
  pii: number;
}

/**
 * Whether a prompt joins the set, from moderation's input verdict (null: none recorded) and the verdicts of
 * reviewers' latest labels on it: a harmful label or PII keeps it out; a flag does unless a label cleared it.
 */
export function promptAdmitted(input: InputVerdict | null, latestLabels: readonly ModerationLabelVerdict[]): boolean {
  if (latestLabels.includes('harmful')) return false;
  if (input === null) return true;
  if (input.pii > 0) return false;
  return input.action === 'allow' || latestLabels.includes('not_harmful');
}

interface CompletionPrompts {
  endpoint: 'chat.completions' | 'completions';
  messages: unknown;
  prompts: unknown;
}

/** The prompts a completion asked: its whole conversation (index null), or each text prompt with its index. */
export function promptsOfCompletion(c: CompletionPrompts): Array<{ index: number | null; prompt: ExportMessage[] }> {
  if (c.endpoint === 'chat.completions') {
    const conversation = chatPromptOf(c.messages);
    return conversation ? [{ index: null, prompt: conversation }] : [];
  }
  return textPromptsOf(c.prompts).flatMap((prompt, index) => (prompt ? [{ index, prompt }] : []));
}

function inputVerdictOf(moderation: unknown): InputVerdict | null {
  const parsed = completionModerationSchema.safeParse(moderation);
  if (!parsed.success || parsed.data.input === null) return null;
  return { action: parsed.data.input.action, pii: parsed.data.input.pii.length };
}

/** Reviewers' latest prompt label per (completion, prompt index) of these completions. */
async function latestPromptLabels(db: Kysely<StoreTables>, completionIds: readonly string[]): Promise<Map<string, Map<number | null, ModerationLabelVerdict>>> {
  const out = new Map<string, Map<number | null, ModerationLabelVerdict>>();
  if (completionIds.length === 0) return out;
  const rows = await db
    .selectFrom('moderation_labels')
    .select(['completion_id', 'prompt_index', 'verdict'])
    .where('target', '=', 'prompt')
    .where('completion_id', 'in', [...completionIds])
    .orderBy('created_at')
    .orderBy('id')
    .execute();
  for (const r of rows) {
    let labels = out.get(r.completion_id);
    if (!labels) out.set(r.completion_id, (labels = new Map()));
    labels.set(r.prompt_index, r.verdict);
  }
  return out;
}

/** The JSONL text (every line ends with "\n") and its line count; filters apply to the completion. */
export async function buildPromptsExport(db: Kysely<StoreTables>, filters: ExportFilters): Promise<{ content: string; rowCount: number }> {
  // Distinct lines in first-seen order (a Set keeps insertion order).
  const lines = new Set<string>();
  let after: { createdAt: Date; id: string } | null = null;
  for (;;) {
    let q = db
      .selectFrom('completions')
      .select(['id', 'created_at', 'endpoint', 'request', 'messages', 'prompts', 'moderation'])
      .where('outcome', '!=', 'failed');
    if (filters.policyVersion) q = q.where('policy_version', '=', filters.policyVersion);
    if (filters.from) q = q.where('created_at', '>=', filters.from);
    if (filters.to) q = q.where('created_at', '<', filters.to);
    const cursor: { createdAt: Date; id: string } | null = after;
    if (cursor) q = q.where((eb) => eb(eb.refTuple('created_at', 'id'), '>', eb.tuple(cursor.createdAt, cursor.id)));
    const rows = await q.orderBy('created_at').orderBy('id').limit(BATCH).execute();
    const labels = await latestPromptLabels(
      db,
      rows.map((r) => r.id),
    );
    for (const row of rows) {
      const input = inputVerdictOf(row.moderation);
      const labelled = labels.get(row.id) ?? new Map<number | null, ModerationLabelVerdict>();
      for (const { index, prompt } of promptsOfCompletion(row)) {
        if (!prompt.some((m) => m.role === 'user')) continue;
        // A conversation is one prompt: a label on any of its messages is a label on it.
        const verdicts = [...labelled].filter(([at]) => index === null || at === index).map(([, verdict]) => verdict);
        if (!promptAdmitted(input, verdicts)) continue;
        lines.add(JSON.stringify({ ...toolsColumnOf(row.request), prompt }));
      }
    }
    const last = rows[rows.length - 1];
    if (rows.length < BATCH || !last) break;
    after = { createdAt: last.created_at, id: last.id };
  }
  return { content: [...lines].map((l) => `${l}\n`).join(''), rowCount: lines.size };
}
