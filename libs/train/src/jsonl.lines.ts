/**
 * Reads a training JSONL file's lines through a zod schema: blank lines are skipped, and a line that is not
 * JSON or not of the schema's shape is an error naming `source:line` and the expected shape. Also preference lines
 * (the admin export's `{"prompt", "chosen", "rejected"}`) as pairs of sides, for the reward and DPO trainers, and KTO
 * lines (`{"prompt", "completion", "label"}`) as labelled examples, for the KTO trainer. Not a streaming reader;
 * training sets here fit in memory.
 */
import type { z } from 'zod';
import { ktoExportLineSchema, preferenceExportLineSchema, type ExportTool } from '@flywheel/contracts';
import type { RewardChatMessage } from '@flywheel/model';

export function parseJsonlLines<S extends z.ZodType>(
  text: string,
  source: string,
  schema: S,
  shape: string,
  each: (line: z.infer<S>) => void,
): void {
  text.split('\n').forEach((raw, i) => {
    if (raw.trim() === '') return;
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      throw new Error(`${source}:${i + 1}: not valid JSON`);
    }
    const r = schema.safeParse(json);
    if (!r.success) throw new Error(`${source}:${i + 1}: not ${shape}: ${r.error.issues[0]?.message}`);
    each(r.data);
  });
}

/**
 * Preference JSONL lines to pairs of sides: `side` turns the prompt messages and one side's messages (and the line's
 * `tools`, [] when none) into a side and its token ids (null drops the pair); pairs whose sides have the same ids are
 * dropped. Throws when no pair is left.
 */
export function parsePreferenceLines<S>(
  text: string,
  source: string,
  side: (prompt: readonly RewardChatMessage[], response: readonly RewardChatMessage[], tools: readonly ExportTool[]) => { ids: readonly number[]; value: S } | null,
): { chosen: S; rejected: S }[] {
  const pairs: { chosen: S; rejected: S }[] = [];
  parseJsonlLines(text, source, preferenceExportLineSchema, 'a preference line ({"prompt", "chosen", "rejected"})', (line) => {
    const chosen = side(line.prompt, line.chosen, line.tools ?? []);
    const rejected = side(line.prompt, line.rejected, line.tools ?? []);
    if (chosen && rejected && chosen.ids.join(',') !== rejected.ids.join(',')) pairs.push({ chosen: chosen.value, rejected: rejected.value });
  });
  if (pairs.length === 0) throw new Error(`${source}: no preference pair with differing sides`);
  return pairs;
}

/**
 * KTO JSONL lines to labelled examples: `example` turns a line's prompt and completion messages (and its `tools`, []
 * when none) into an example (null drops the line); `label` true marks a desirable completion (thumbs up, rating ≥ 4,
 * a correction), false an undesirable one. Throws when no example is left, or when one kind is missing: KTO's
 * reference point compares the two, so a set of one kind cannot train.
 */
export function parseKtoLines<S>(
  text: string,
  source: string,
  example: (prompt: readonly RewardChatMessage[], completion: readonly RewardChatMessage[], tools: readonly ExportTool[]) => S | null,
): { value: S; label: boolean }[] {
  const out: { value: S; label: boolean }[] = [];
  parseJsonlLines(text, source, ktoExportLineSchema, 'a KTO line ({"prompt", "completion", "label"})', (line) => {
    const value = example(line.prompt, line.completion, line.tools ?? []);
    if (value !== null) out.push({ value, label: line.label });
  });
  if (out.length === 0) throw new Error(`${source}: no KTO example with a completion to score`);
  const desirable = out.filter((e) => e.label).length;
  const missing = desirable === 0 ? 'desirable (label true)' : desirable === out.length ? 'undesirable (label false)' : null;
  if (missing !== null) {
    throw new Error(`${source}: no ${missing} example among ${out.length}; KTO needs both desirable and undesirable examples`);
  }
  return out;
}
