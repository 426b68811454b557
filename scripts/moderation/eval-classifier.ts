/**
 * Held-out evaluation of a moderation model (the committed one, or --model-dir DIR): the same seeded split
 * the trainer used (the artifact's seed), the classifier alone at its per-head thresholds and the layered
 * moderator under the default policy, overall and per language, as one JSON object on stdout.
 * Run: npm run build:ts && node dist/scripts/moderation/eval-classifier.js [--direction input|output]
 *      [--model-dir DIR] [--json]   (--json is accepted for symmetry with the benchmarks: output is always JSON)
 */
import path from 'node:path';
import { evaluate, loadModerator, loadSeedSet, moderationDataDir, splitSeedSet } from '../../libs/moderation/src';

function stringArg(name: string): string | null {
  const i = process.argv.indexOf(name);
  if (i < 0) return null;
  const v = process.argv[i + 1];
  if (v === undefined || v.startsWith('--')) throw new Error(`${name} needs a value`);
  return v;
}

function main(): void {
  const modelDir = stringArg('--model-dir');
  const moderator = loadModerator({ modelDir: modelDir === null ? null : path.resolve(modelDir) });
  const seed = moderator.classifier.meta.seed;
  const { test } = splitSeedSet(loadSeedSet(path.join(moderationDataDir(), 'seed')), seed);
  const direction = stringArg('--direction') === 'output' ? 'output' : 'input';
  const thresholds = Object.fromEntries(moderator.classifier.heads.map((h, i) => [h, moderator.classifier.thresholds[i]]));
  process.stdout.write(`${JSON.stringify({ model: moderator.modelId, modelDir: modelDir ?? 'built-in', seed, direction, thresholds, ...evaluate(moderator, test, direction) })}\n`);
}

main();
