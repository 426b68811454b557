/**
 * Held-out evaluation of the committed moderation model: the same seeded split the trainer used, the
 * classifier alone and the layered moderator under the default policy, as one JSON object on stdout.
 * Run: npm run build:ts && node dist/scripts/moderation/eval-classifier.js [--direction input|output]
 */
import path from 'node:path';
import { evaluate, loadModerator, loadSeedSet, moderationDataDir, splitSeedSet } from '../../libs/moderation/src';

function main(): void {
  const moderator = loadModerator();
  const seed = moderator.classifier.meta.seed;
  const { test } = splitSeedSet(loadSeedSet(path.join(moderationDataDir(), 'seed')), seed);
  const i = process.argv.indexOf('--direction');
  const direction = i >= 0 && process.argv[i + 1] === 'output' ? 'output' : 'input';
  process.stdout.write(`${JSON.stringify({ model: moderator.modelId, seed, direction, ...evaluate(moderator, test, direction) })}\n`);
}

main();
