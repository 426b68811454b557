/**
 * What a training run writes into a folder: the HF checkpoint of its weights (config fields and tokenizer files kept
 * from the checkpoint it started from), and the training state beside it (AdamW moments in optimizer.safetensors;
 * step, RNG, data position, optimizer config and the run's own entries in training_state.json) so a killed job
 * resumes where it stopped. One format for every trainer. Not when to write (resume-point.ts) nor the adapters
 * (peft-adapter.io.ts).
 */
import { mkdir, readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { z } from 'zod';
import type { ModelSpec, WeightMap } from '@flywheel/kernels';
import { ModelLoadError, readSafetensorsFile, writeFileAtomic, writeHfCheckpoint, writeSafetensorsFile, type TensorToWrite } from '@flywheel/model';

export const TRAINING_STATE_FILE = 'training_state.json';
export const OPTIMIZER_STATE_FILE = 'optimizer.safetensors';

/**
 * Writes the trained weights as an HF checkpoint in `dir`: config.json keeps the fields of `sourceDir`'s config.json
 * that the spec does not model, and `sourceDir`'s tokenizer and generation files are copied. scoreLabels: rows of a
 * score head (a LlamaForSequenceClassification export); null or absent for a causal LM.
 */
export async function writeTrainedCheckpoint(
  dir: string,
  o: { sourceDir: string; spec: ModelSpec; weights: WeightMap; scoreLabels?: number | null },
): Promise<void> {
  const baseConfig = JSON.parse(await readFile(path.join(o.sourceDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  await writeHfCheckpoint(dir, { spec: o.spec, weights: o.weights, scoreLabels: o.scoreLabels ?? null, baseConfig, tokenizerDir: o.sourceDir });
}

const trainingStateSchema = z.strictObject({
  format: z.literal('flywheel-training-state/1'),
  /** Optimizer steps taken. */
  step: z.int().nonnegative(),
  /** The data loader's RNG state (opaque numbers, e.g. a xorshift state or a seed). */
  rng: z.array(z.number()),
  /** Position in the data stream: epoch and index of the next example. */
  data: z.strictObject({ epoch: z.int().nonnegative(), index: z.int().nonnegative() }),
  /** The optimizer configuration in use (free-form, restored as written). */
  optimizer: z.record(z.string(), z.number()),
  extra: z.record(z.string(), z.unknown()).optional(),
});
export type TrainingStateJson = z.infer<typeof trainingStateSchema>;

export interface TrainingState {
  step: number;
  rng: number[];
  data: { epoch: number; index: number };
  optimizer: Record<string, number>;
  /** AdamW first and second moments by parameter name. */
  m: WeightMap;
  v: WeightMap;
  /** The run's own entries: its key (the options a resume must match) and its running totals. */
  extra?: Record<string, unknown>;
}

/** Writes optimizer.safetensors (tensors `m.<name>`, `v.<name>`, f32 flat) and training_state.json into dir. */
export async function writeTrainingState(dir: string, s: TrainingState): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tensors: TensorToWrite[] = [];
  for (const [name, data] of s.m) tensors.push({ name: `m.${name}`, shape: [data.length], data });
  for (const [name, data] of s.v) tensors.push({ name: `v.${name}`, shape: [data.length], data });
  await writeSafetensorsFile(path.join(dir, OPTIMIZER_STATE_FILE), tensors);
  const json: TrainingStateJson = {
    format: 'flywheel-training-state/1',
    step: s.step,
    rng: s.rng,
    data: s.data,
    optimizer: s.optimizer,
    ...(s.extra ? { extra: s.extra } : {}),
  };
  // The state file goes last: its presence marks a complete checkpoint.
  await writeFileAtomic(path.join(dir, TRAINING_STATE_FILE), JSON.stringify(json, null, 2) + '\n');
}

/** Reads what writeTrainingState wrote; a ModelLoadError when missing or malformed. */
export async function readTrainingState(dir: string): Promise<TrainingState> {
  const file = path.join(dir, TRAINING_STATE_FILE);
  let parsed: TrainingStateJson;
  try {
    const r = trainingStateSchema.safeParse(JSON.parse(await readFile(file, 'utf8')));
    if (!r.success) throw new Error(r.error.issues[0].message);
    parsed = r.data;
  } catch (err) {
    throw new ModelLoadError(`unreadable training state (${err instanceof Error ? err.message : String(err)})`, file);
  }
  const tensors = await readSafetensorsFile(path.join(dir, OPTIMIZER_STATE_FILE));
  const m = new Map<string, Float32Array>();
  const v = new Map<string, Float32Array>();
  for (const [name, t] of tensors) {
    if (name.startsWith('m.')) m.set(name.slice(2), t.data);
    else if (name.startsWith('v.')) v.set(name.slice(2), t.data);
  }
  return { step: parsed.step, rng: parsed.rng, data: parsed.data, optimizer: parsed.optimizer, m, v, ...(parsed.extra ? { extra: parsed.extra } : {}) };
}
