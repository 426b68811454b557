/**
 * The labelled seed set (data/seed/*.jsonl): one example per line, `{id, text, lang, labels, hard?}`,
 * labels from the 13 OpenAI categories plus `prompt_injection` (PII is the detectors' job, not a
 * label), `[]` for benign, `hard: true` for benign text that looks risky (medicine, history, fiction,
 * security teaching). Reading, label closure and the seeded stratified split; no training here.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { MODERATION_CATEGORIES, type ModerationCategory } from '@flywheel/contracts';
import { mulberry32, shuffleInPlace } from '@flywheel/kernels';
import { PARENT_CATEGORY } from './moderator';

/** The classifier's heads: what the seed set labels. */
export const CLASSIFIER_HEADS = [...MODERATION_CATEGORIES, 'prompt_injection'] as const;
export type ClassifierHead = (typeof CLASSIFIER_HEADS)[number];

/**
 * Languages of the seed set; `und` (unknown or other) is for reviewer-labelled texts from the store whose
 * language nobody recorded. The split stratifies by language, so each gets held-out examples.
 */
export const SEED_LANGUAGES = ['en', 'zh', 'de', 'fr', 'es', 'und'] as const;
export type SeedLanguage = (typeof SEED_LANGUAGES)[number];

export const seedExampleSchema = z
  .object({
    id: z.string().min(1),
    text: z.string().min(1),
    lang: z.enum(SEED_LANGUAGES),
    labels: z.array(z.enum(CLASSIFIER_HEADS)),
    hard: z.boolean().optional(),
  })
  .strict();
export type SeedExample = z.infer<typeof seedExampleSchema>;

/** Adds each subcategory's parent (`hate/threatening` → `hate`), as OpenAI labels them. */
export function closeLabels(labels: readonly ClassifierHead[]): ClassifierHead[] {
  const out = new Set<ClassifierHead>(labels);
  for (const l of labels) {
    const parent = PARENT_CATEGORY[l as ModerationCategory];
    if (parent) out.add(parent);
  }
  return CLASSIFIER_HEADS.filter((h) => out.has(h));
}

export function loadSeedSet(dir: string): SeedExample[] {
  const files = readdirSync(dir).filter((f) => f.endsWith('.jsonl')).sort();
  const out: SeedExample[] = [];
  const ids = new Set<string>();
  for (const f of files) {
    const lines = readFileSync(path.join(dir, f), 'utf8').split('\n');
    lines.forEach((line, i) => {
      if (line.trim() === '') return;
      let parsed: SeedExample;
      try {
        parsed = seedExampleSchema.parse(JSON.parse(line));
      } catch (err) {
        throw new Error(`${f}:${i + 1}: ${(err as Error).message}`);
      }
      if (ids.has(parsed.id)) throw new Error(`${f}:${i + 1}: duplicate id ${parsed.id}`);
      ids.add(parsed.id);
      out.push({ ...parsed, labels: closeLabels(parsed.labels) });
    });
  }
  return out;
}

export interface SeedSplit {
  train: SeedExample[];
  test: SeedExample[];
}

/**
 * Stratified by the example's most specific label (or benign/hard-benign) and language, shuffled with
 * `seed`, every k-th example of each stratum held out, so every category has held-out positives.
 */
export function splitSeedSet(examples: readonly SeedExample[], seed: number, testFraction = 0.2): SeedSplit {
  const strata = new Map<string, SeedExample[]>();
  for (const e of examples) {
    const key = `${e.lang}:${e.labels[e.labels.length - 1] ?? (e.hard ? 'hard' : 'benign')}`;
    const list = strata.get(key) ?? [];
    list.push(e);
    strata.set(key, list);
  }
  const rand = mulberry32(seed);
  const train: SeedExample[] = [];
  const test: SeedExample[] = [];
  for (const key of [...strata.keys()].sort()) {
    const list = [...strata.get(key)!].sort((a, b) => (a.id < b.id ? -1 : 1));
    shuffleInPlace(list, rand);
    const every = Math.max(2, Math.round(1 / testFraction));
    list.forEach((e, i) => ((i + 1) % every === 0 ? test : train).push(e));
  }
  return { train, test };
}
