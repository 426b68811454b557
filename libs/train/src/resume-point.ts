/**
 * Resume points: a folder holding a trainable model's weights (an HF checkpoint; with LoRA the merged weights plus the
 * PEFT adapter under `adapter/`) and its training state (training-checkpoint.io.ts), written so that a kill at any
 * moment leaves either a complete point or none; finding one written by the same run (its key); putting a model and a
 * data order back where it stood; when a run writes one between its steps, and the error a run stopped there throws.
 * Used by every trainer that resumes (SFT, DPO, KTO, PPO, GRPO). No training loop here.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import {
  getAdapterWeights,
  getMergedWeights,
  getOptimizerState,
  setOptimizerState,
  SCORE_HEAD_WEIGHT,
  trainableModelInfo,
  type ModelSpec,
  type OptimizerConfig,
  type TrainableModelHandle,
} from '@flywheel/kernels';
import { EpochOrder } from './epoch-order';
import { CHECKPOINT_ADAPTER_DIR, PEFT_ADAPTER_CONFIG_FILE, PEFT_ADAPTER_WEIGHTS_FILE, readPeftAdapter, writePeftAdapter } from './peft-adapter.io';
import type { Rng } from './rng';
import { readTrainingState, TRAINING_STATE_FILE, writeTrainedCheckpoint, writeTrainingState, type TrainingState } from './training-checkpoint.io';

/**
 * Writes a resume point into outDir: the HF checkpoint of the model's weights (config and tokenizer from modelDir; a
 * score head when the model has one), then the training state (the model's AdamW state and step, plus `state`). The
 * old state file is removed first and the new one written last, so a kill mid-write never pairs new weights with an
 * old state. A LoRA model writes its merged weights (a plain checkpoint) and its adapter in PEFT's format under
 * `adapter/`, the tensors its resume loads onto the base (loadLoraResume).
 */
export async function saveResumePoint(
  model: TrainableModelHandle,
  o: { outDir: string; modelDir: string; spec: ModelSpec; state: Omit<TrainingState, 'step' | 'm' | 'v'> },
): Promise<void> {
  await rm(path.join(o.outDir, TRAINING_STATE_FILE), { force: true });
  await writeModelOutputs(model, o);
  const s = getOptimizerState(model);
  await writeTrainingState(o.outDir, { step: s.step, m: s.m, v: s.v, ...o.state });
}

/**
 * A trained model's checkpoint in outDir: the (merged, under LoRA) weights as an HF checkpoint with the source's
 * tokenizer and config, a score head when the model has one, and under LoRA the PEFT adapter in `adapter/`.
 */
export async function writeModelOutputs(model: TrainableModelHandle, o: { outDir: string; modelDir: string; spec: ModelSpec }): Promise<void> {
  const info = trainableModelInfo(model);
  const scoreLabels = info.numLabels > 0 ? info.numLabels : null;
  const merged = getMergedWeights(model);
  await writeTrainedCheckpoint(o.outDir, { sourceDir: o.modelDir, spec: o.spec, weights: merged, scoreLabels });
  const adapterDir = path.join(o.outDir, CHECKPOINT_ADAPTER_DIR);
  if (info.lora) {
    const config = { ...info.lora, baseModel: o.modelDir, taskType: info.numLabels > 0 ? ('SEQ_CLS' as const) : ('CAUSAL_LM' as const) };
    // A scalar head trains in full beside the adapters: PEFT saves it with them (modules_to_save).
    const weights = getAdapterWeights(model);
    const head = info.numLabels > 0 ? merged.get(SCORE_HEAD_WEIGHT) : undefined;
    if (head !== undefined) weights.set(SCORE_HEAD_WEIGHT, head);
    await writePeftAdapter(adapterDir, { spec: o.spec, weights, config });
  } else {
    // An adapter left by an earlier LoRA run in this folder no longer describes these weights.
    for (const f of [PEFT_ADAPTER_CONFIG_FILE, PEFT_ADAPTER_WEIGHTS_FILE]) await rm(path.join(adapterDir, f), { force: true });
  }
}

/**
 * The counterpart of saveResumePoint: the AdamW state and step into the model and, given an order, the data position
 * into it (checked against the saved RNG; `where` names the state in that error). Returns the optimizer steps restored.
 */
export function restoreResumePoint(model: TrainableModelHandle, state: TrainingState, order: EpochOrder | null, where: string): number {
  order?.restore(state, where);
  setOptimizerState(model, { step: state.step, m: state.m, v: state.v });
  return state.step;
}

/**
 * Where a resumable trainer over shuffled examples begins: at its resume point (optimizer state, data position and
 * the run's totals restored; onResume told the step), or at step 0 with the totals `fresh` measures (the held-out
 * figures before training). Either way the data order is the one `rng` deals for `n` examples. `save` writes a resume
 * point of the run as it stands: the model, the data position, the optimizer settings, and the run's key (what a
 * resume must match, resumableState) with the totals as they are then.
 */
export async function beginOrResume<T>(
  model: TrainableModelHandle,
  saved: { state: TrainingState; totals: T } | null,
  o: {
    rng: Rng;
    n: number;
    outDir: string;
    modelDir: string;
    spec: ModelSpec;
    key: Record<string, unknown>;
    optimizer: OptimizerConfig;
    onResume?: (step: number) => unknown;
    fresh: () => Promise<T>;
  },
): Promise<{ data: EpochOrder; start: number; totals: T; save: () => Promise<void> }> {
  const data = EpochOrder.reshuffled(o.rng, o.n);
  let start = 0;
  let totals: T;
  if (saved) {
    start = restoreResumePoint(model, saved.state, data, o.outDir);
    await o.onResume?.(start);
    totals = saved.totals;
  } else {
    totals = await o.fresh();
  }
  const state = () => ({ ...data.position(), optimizer: { ...o.optimizer }, extra: { ...o.key, totals } });
  const save = () => saveResumePoint(model, { outDir: o.outDir, modelDir: o.modelDir, spec: o.spec, state: state() });
  return { data, start, totals, save };
}

/**
 * Thrown by a trainer that stopped because its caller asked it to (shouldStop): outDir then holds a resume point at
 * `step`, and a resumed run continues from there. Each trainer throws its own subclass.
 */
export class TrainingStoppedError extends Error {
  constructor(
    readonly step: number,
    run: string,
  ) {
    super(`${run} stopped at step ${step} (checkpoint saved)`);
    this.name = new.target.name;
  }
}

/** How a trainer's caller checkpoints and stops a run between optimizer steps. */
export interface StepCheckpointHooks {
  /** Polled after each step but the last: when true the run saves a resume point and throws its stop error. */
  shouldStop?: () => boolean;
  /** After each intermediate resume point (step = optimizer steps it holds). */
  onCheckpoint?: (step: number) => void | Promise<void>;
}

/**
 * After optimizer step `done` (1-based) of `steps`: when the run was asked to stop, or every `every` steps (0: never),
 * saves a resume point and tells onCheckpoint. True when the run must stop now (the trainer throws its StoppedError).
 * Nothing happens after the last step: the run's end saves the finished run itself.
 */
export async function checkpointAfterStep(done: number, steps: number, every: number, hooks: StepCheckpointHooks, save: () => Promise<void>): Promise<boolean> {
  if (done >= steps) return false;
  const stopping = hooks.shouldStop?.() ?? false;
  if (stopping || (every > 0 && done % every === 0)) {
    await save();
    await hooks.onCheckpoint?.(done);
  }
  return stopping;
}

/** The weights a LoRA run resumes from: the base checkpoint's, plus the adapters saveResumePoint wrote in outDir. */
export async function loadLoraResume(baseWeights: ReadonlyMap<string, Float32Array>, outDir: string): Promise<Map<string, Float32Array>> {
  return new Map([...baseWeights, ...(await readPeftAdapter(path.join(outDir, CHECKPOINT_ADAPTER_DIR))).weights]);
}

/** A key entry the saved state holds another value of: its name, the saved value and the wanted one. */
export interface KeyMismatch {
  name: string;
  saved: unknown;
  wanted: unknown;
}

/**
 * dir's training state, if any, and whether it was written by a run with the same key: every key entry (compared as
 * JSON; undefined entries are not part of a key) must equal the one in the state's `extra`, where a null entry
 * matches a state without it (states written before that option existed). null when dir holds no training state.
 */
export async function findResumePoint(dir: string, key: Record<string, unknown>): Promise<{ state: TrainingState; mismatch: KeyMismatch | null } | null> {
  if (!existsSync(path.join(dir, TRAINING_STATE_FILE))) return null;
  const state = await readTrainingState(dir);
  const extra = state.extra ?? {};
  const wanted = JSON.parse(JSON.stringify(key)) as Record<string, unknown>;
  for (const [name, v] of Object.entries(wanted)) {
    if (JSON.stringify(extra[name] ?? null) !== JSON.stringify(v ?? null)) return { state, mismatch: { name, saved: extra[name], wanted: v } };
  }
  return { state, mismatch: null };
}

/**
 * outDir's training state when it was written by a run with the same key (`extra` holds the key's entries), with the
 * run totals `readTotals` takes from `extra.totals` (num: a number there, else NaN); null when absent or for other
 * options, so the run starts afresh.
 */
export async function resumableState<T>(outDir: string, key: Record<string, unknown>, readTotals: (num: (name: string) => number) => T): Promise<{ state: TrainingState; totals: T } | null> {
  const found = await findResumePoint(outDir, key);
  if (!found || found.mismatch) return null;
  const t = found.state.extra?.totals;
  if (typeof t !== 'object' || t === null) return null;
  const num = (name: string): number => {
    const v: unknown = Reflect.get(t, name);
    return typeof v === 'number' ? v : NaN;
  };
  return { state: found.state, totals: readTotals(num) };
}
