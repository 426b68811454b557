/**
 * The models the gateway benchmark serves: stories260K from models/, and a SmolLM2-135M-shaped checkpoint with
 * seeded random weights written into a scratch folder at bench start (nothing is downloaded), so a decode step
 * costs what a model people serve costs. Not a test fixture: the 135M text is gibberish by design.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { writeHfCheckpoint } from '@flywheel/model';
import { randomWeights, SMOLLM2_135M } from './bench.shapes';

const ROOT = path.resolve(__dirname, '..', '..');
const STORIES_DIR = path.join(ROOT, 'models', 'stories260K');

export interface GatewayBenchModel {
  /** Name on the command line (--models) and in the report. */
  name: string;
  /** One line for the report: what the model is. */
  about: string;
  /** Defaults sized so that every model at 1, 8 and 32 clients fits a few minutes on two cores. */
  maxTokens: number;
  requests: number;
  /** Fewest requests each client makes per half-run (a level runs max(requests / 2, clients × minRounds)). */
  minRounds: number;
  /** The checkpoint directory to point FLYWHEEL_MODEL at; synthetic ones are written under `scratch`. */
  prepare(scratch: string): Promise<string>;
}

export const GATEWAY_BENCH_MODELS: readonly GatewayBenchModel[] = [
  {
    name: 'stories260K',
    about: 'models/stories260K (about 0.4 ms per decode step: shows the gateway cost at its largest share)',
    maxTokens: 64,
    requests: 64,
    minRounds: 2,
    prepare: async () => STORIES_DIR,
  },
  {
    name: 'smol135m-shape',
    about: 'SmolLM2-135M shape (bench.shapes), seeded random f32 weights, stories260K tokenizer widened to 49152 ids',
    maxTokens: 32,
    requests: 8,
    minRounds: 1,
    prepare: async (scratch) => {
      const dir = path.join(scratch, 'smol135m-shape');
      const baseConfig = z.looseObject({}).parse(JSON.parse(await readFile(path.join(STORIES_DIR, 'config.json'), 'utf8')));
      await writeHfCheckpoint(dir, { spec: SMOLLM2_135M, weights: randomWeights(SMOLLM2_135M, 135), baseConfig, tokenizerDir: STORIES_DIR });
      await writeWidenedTokenizer(STORIES_DIR, dir, SMOLLM2_135M.vocabSize);
      return dir;
    },
  },
];

export function benchModelNamed(name: string): GatewayBenchModel {
  const model = GATEWAY_BENCH_MODELS.find((m) => m.name === name);
  if (!model) throw new Error(`unknown model ${name}; known: ${GATEWAY_BENCH_MODELS.map((m) => m.name).join(', ')}`);
  return model;
}

const bpeTokenizerSchema = z.looseObject({
  model: z.looseObject({ type: z.literal('BPE'), vocab: z.record(z.string(), z.number().int()) }),
});

/**
 * Copies `srcDir`'s BPE tokenizer.json into `outDir` with its vocab padded to `vocabSize` by tokens `▁w<id>`
 * that no merge produces: prompts encode exactly as before, and every id a random-weight model samples decodes
 * to a distinct " w<id>" (about 6 characters) instead of `<unk>` (what an id past the vocab decodes to), so
 * each token yields text and the SSE stream carries it.
 */
async function writeWidenedTokenizer(srcDir: string, outDir: string, vocabSize: number): Promise<void> {
  const raw: unknown = JSON.parse(await readFile(path.join(srcDir, 'tokenizer.json'), 'utf8'));
  const tokenizer = bpeTokenizerSchema.parse(raw);
  const vocab = tokenizer.model.vocab;
  const size = Object.keys(vocab).length;
  for (let id = size; id < vocabSize; id++) {
    const token = `▁w${id}`;
    if (token in vocab) throw new Error(`tokenizer widening: ${token} is already in ${srcDir}'s vocab`);
    vocab[token] = id;
  }
  await writeFile(path.join(outDir, 'tokenizer.json'), JSON.stringify(tokenizer));
}

const eosSchema = z.looseObject({ eos_token_id: z.union([z.number().int(), z.array(z.number().int())]).nullish() });

/** End-of-sequence ids of a checkpoint (generation_config.json and config.json), to ban with logit_bias. */
export async function eosTokenIds(dir: string): Promise<number[]> {
  const ids = new Set<number>();
  for (const file of ['generation_config.json', 'config.json']) {
    const text = await readFile(path.join(dir, file), 'utf8').catch(() => null);
    if (text === null) continue;
    const eos = eosSchema.parse(JSON.parse(text)).eos_token_id;
    for (const id of eos == null ? [] : Array.isArray(eos) ? eos : [eos]) ids.add(id);
  }
  if (ids.size === 0) throw new Error(`${dir}: no eos_token_id in generation_config.json or config.json`);
  return [...ids].sort((a, b) => a - b);
}
