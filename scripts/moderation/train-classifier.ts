/**
 * Trains the moderation classifier from the seed set and writes the committed artifact
 * (libs/moderation/data/model/{model.json,weights.bin}), then prints the held-out evaluation as JSON.
 * Deterministic: the same seed set and --seed give byte-identical weights.
 * Run: npm run build:ts && node dist/scripts/moderation/train-classifier.js [--seed N] [--epochs N] [--out DIR]
 * (--out writes elsewhere than the committed artifact: test/moderation-artifact.test.ts compares the two).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  CompiledLexicon,
  DEFAULT_TRAIN_OPTIONS,
  evaluate,
  lexiconSchema,
  loadPolicy,
  loadSeedSet,
  moderationDataDir,
  Moderator,
  splitSeedSet,
  trainClassifier,
} from '../../libs/moderation/src';

const MODEL_VERSION = 'seed-5';

function intArg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const n = Number(process.argv[i + 1]);
  if (!Number.isInteger(n)) throw new Error(`${name} must be an integer`);
  return n;
}

function main(): void {
  const data = moderationDataDir();
  const seedDir = path.join(data, 'seed');
  const seed = intArg('--seed', DEFAULT_TRAIN_OPTIONS.seed);
  const opts = { ...DEFAULT_TRAIN_OPTIONS, seed, epochs: intArg('--epochs', DEFAULT_TRAIN_OPTIONS.epochs) };
  const examples = loadSeedSet(seedDir);
  const { train, test } = splitSeedSet(examples, seed);
  const hash = createHash('sha256');
  for (const f of readdirSync(seedDir).sort()) hash.update(readFileSync(path.join(seedDir, f)));
  const trained = trainClassifier(train, opts, { version: MODEL_VERSION, seedSetSha256: hash.digest('hex'), split: { train: train.length, test: test.length } });

  const lexicon = new CompiledLexicon(lexiconSchema.parse(JSON.parse(readFileSync(path.join(data, 'lexicon.json'), 'utf8'))));
  const policy = loadPolicy(path.join(data, 'policy.default.json'));
  const moderator = new Moderator({ lexicon, classifier: trained.classifier, policy, modelId: `flywheel-moderation-${MODEL_VERSION}` });
  const report = evaluate(moderator, test);

  const outIndex = process.argv.indexOf('--out');
  const outDir = outIndex >= 0 ? path.resolve(process.argv[outIndex + 1]) : path.join(data, 'model');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, 'weights.bin'), Buffer.from(trained.weights.buffer, trained.weights.byteOffset, trained.weights.byteLength));
  writeFileSync(path.join(outDir, 'model.json'), `${JSON.stringify(trained.meta, null, 1)}\n`);
  process.stdout.write(`${JSON.stringify({ model: moderator.modelId, train: train.length, test: test.length, heldOut: report })}\n`);
}

main();
