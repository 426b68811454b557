import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_TRAIN_OPTIONS, trainClassifier } from './classifier.training';
import { fitPlatt, sigmoid } from './linear.classifier';
import { moderationDataDir } from './moderation.loader';
import { CLASSIFIER_HEADS, closeLabels, loadSeedSet, splitSeedSet } from './seed.dataset';

const data = moderationDataDir();
const seedSet = loadSeedSet(path.join(data, 'seed'));

describe('classifier training', () => {
  it('reproduces the committed artifact byte for byte from the seed set and seed', () => {
    const meta = JSON.parse(readFileSync(path.join(data, 'model', 'model.json'), 'utf8'));
    const { train } = splitSeedSet(seedSet, meta.seed);
    const trained = trainClassifier(train, { ...DEFAULT_TRAIN_OPTIONS, seed: meta.seed, epochs: meta.training.epochs });
    const committed = readFileSync(path.join(data, 'model', 'weights.bin'));
    expect(Buffer.from(trained.weights.buffer).equals(committed)).toBe(true);
    expect(trained.meta.platt).toEqual(meta.platt);
  }, 60_000);

  it('holds out every category, in both languages where the seed set has them', () => {
    const { train, test } = splitSeedSet(seedSet, 1234);
    expect(train.length + test.length).toBe(seedSet.length);
    expect(new Set([...train, ...test].map((e) => e.id)).size).toBe(seedSet.length);
    for (const head of CLASSIFIER_HEADS) expect(test.some((e) => e.labels.includes(head))).toBe(true);
    expect(test.some((e) => e.hard && e.lang === 'zh')).toBe(true);
    expect(seedSet.length).toBeGreaterThanOrEqual(450);
  });

  it('closes labels upward to the parent category', () => {
    expect(closeLabels(['sexual/minors'])).toEqual(['sexual', 'sexual/minors']);
    expect(closeLabels(['prompt_injection'])).toEqual(['prompt_injection']);
  });

  it('fits Platt scaling that recovers a known sigmoid', () => {
    const logits: number[] = [];
    const labels: number[] = [];
    let s = 7;
    const rand = () => ((s = (s * 16807) % 2147483647) / 2147483647);
    for (let i = 0; i < 4000; i++) {
      const z = rand() * 12 - 6;
      logits.push(z);
      labels.push(rand() < sigmoid(2 * z - 1) ? 1 : 0);
    }
    const { a, b } = fitPlatt(logits, labels);
    expect(a).toBeCloseTo(2, 0);
    expect(b).toBeCloseTo(-1, 0);
  });
});
