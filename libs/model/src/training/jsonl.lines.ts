/**
 * Reads a training JSONL file's lines through a zod schema: blank lines are skipped, and a line that is not
 * JSON or not of the schema's shape is an error naming `source:line` and the expected shape. Not a streaming
 * reader; training sets here fit in memory.
 */
import type { z } from 'zod';

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
