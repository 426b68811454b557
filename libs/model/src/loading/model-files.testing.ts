/**
 * Test-only helpers that find Flywheel's model files: the read-only shared models (FLYWHEEL_SHARED_MODELS, or
 * `shared/models` beside or inside the repository clone), the committed fixtures in test/fixtures, and the
 * golden logits written by scripts/reference/llama_reference.py. Not used by production code.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';

export const REPO_ROOT = path.resolve(__dirname, '../../../..');
export const FIXTURES_DIR = path.join(REPO_ROOT, 'test', 'fixtures');

/** The shared models folder; throws (rather than skipping tests) when it cannot be found. */
export function sharedModelsDir(): string {
  const candidates = [
    process.env.FLYWHEEL_SHARED_MODELS,
    path.join(REPO_ROOT, '..', 'shared', 'models'),
    path.join(REPO_ROOT, 'shared', 'models'),
  ].filter((p): p is string => p !== undefined && p !== '');
  const found = candidates.find((p) => existsSync(path.join(p, 'stories260K-hf', 'config.json')));
  if (found === undefined) {
    throw new Error(`shared models not found; set FLYWHEEL_SHARED_MODELS (looked in ${candidates.join(', ')})`);
  }
  return found;
}

const goldenCaseSchema = z.looseObject({
  name: z.string(),
  tokens: z.array(z.int().nonnegative()),
  offset: z.int().nonnegative(),
  shape: z.tuple([z.int().positive(), z.int().positive()]),
  greedy: z.array(z.int().nonnegative()).optional(),
});
const goldenIndexSchema = z.looseObject({
  checkpoints: z.array(z.string()),
  cases: z.array(goldenCaseSchema),
  logitsFile: z.string(),
});
export type GoldenCase = z.infer<typeof goldenCaseSchema>;

export interface Golden {
  checkpoints: string[];
  cases: GoldenCase[];
  /** All cases' logits, back to back. */
  logits: Float32Array;
}

/** Reads test/fixtures/golden/<name>.json and its .f32 logits. */
export function readGolden(name: string): Golden {
  const dir = path.join(FIXTURES_DIR, 'golden');
  const index = goldenIndexSchema.parse(JSON.parse(readFileSync(path.join(dir, `${name}.json`), 'utf8')));
  const bytes = readFileSync(path.join(dir, index.logitsFile));
  const logits = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  return { checkpoints: index.checkpoints, cases: index.cases, logits };
}

/** (T, vocab) logits of one golden case. */
export function caseLogits(golden: Golden, c: GoldenCase): Float32Array {
  return golden.logits.subarray(c.offset, c.offset + c.shape[0] * c.shape[1]);
}
