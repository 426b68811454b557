/**
 * Test-only helpers that find Flywheel's model files, all committed to the repository: the default model
 * models/stories260K, the fixtures in test/fixtures, and the golden logits written by
 * scripts/reference/llama_reference.py. Nothing here reads a `shared/` folder, so specs run in any clone.
 * Not used by production code.
 */
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';

export const REPO_ROOT = path.resolve(__dirname, '../../../..');
export const FIXTURES_DIR = path.join(REPO_ROOT, 'test', 'fixtures');

/**
 * models/stories260K, the committed default policy model (byte-identical to the team's
 * shared/models/stories260K-hf). Throws rather than letting a spec skip when a clone lacks it.
 */
export function committedModelDir(): string {
  const dir = path.join(REPO_ROOT, 'models', 'stories260K');
  if (!existsSync(path.join(dir, 'model.safetensors'))) {
    throw new Error(`committed model not found: ${dir}/model.safetensors is missing (it is part of the repository)`);
  }
  return dir;
}

/** llama.cpp's own GGUF conversion of stories260K (copied from shared/models/stories260K; see test/fixtures/README.md). */
export const STORIES_GGUF = path.join(FIXTURES_DIR, 'stories260K.gguf');

/**
 * Where a golden index's checkpoint reference lives. llama_reference.py names the stories checkpoints it read as
 * `<shared>/models/...`; each has a committed twin with the same bytes, so no spec depends on the shared folder.
 */
export function goldenCheckpointPath(ref: string): string {
  if (ref === '<shared>/models/stories260K-hf') return committedModelDir();
  if (ref === '<shared>/models/stories260K/stories260K.gguf') return STORIES_GGUF;
  if (ref.startsWith('<shared>/')) throw new Error(`golden checkpoint ${ref} has no committed copy in the repository`);
  return path.join(FIXTURES_DIR, ref);
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
