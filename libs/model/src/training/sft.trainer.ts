/**
 * Supervised fine-tuning on chat JSONL (`{"messages": [...]}`, the flywheel's SFT export format) with the native
 * training path: loss only on assistant tokens, AdamW with warmup + cosine, a held-out split evaluated before and
 * after, an HF checkpoint + resumable training state in outDir (every `checkpointEvery` steps and at the end).
 * Shared by `flywheel train sft` and the trainer's BullMQ `sft` job; no CLI, queue or store code here.
 */
import { existsSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { sftExportLineSchema } from '@flywheel/contracts';
import {
  createTrainableModel,
  freeTrainableModel,
  getAdapterWeights,
  getMergedWeights,
  getOptimizerState,
  ops,
  optimizerStep,
  setOptimizerState,
  trainableModelInfo,
  trainStep,
  zeroGrad,
  DEFAULT_OPTIMIZER,
  type LoraInfo,
  type LoraOptions,
  type ModelSpec,
  type OptimizerConfig,
  type TrainableModelHandle,
} from '@flywheel/kernels';
import { loadCheckpoint, ModelLoadError, type Checkpoint } from '../loading';
import { readTrainingState, TRAINING_STATE_FILE, writeHfCheckpoint, writeTrainingState, type TrainingState } from '../loading/safetensors.writer';
import { parseJsonlLines } from './jsonl.lines';
import { CHECKPOINT_ADAPTER_DIR, PEFT_ADAPTER_CONFIG_FILE, PEFT_ADAPTER_WEIGHTS_FILE, readPeftAdapter, writePeftAdapter } from './peft-adapter.io';

/** One tokenized conversation: ids and, per position t, whether ids[t] is an assistant token (a loss target). */
export interface SftExample {
  ids: number[];
  assistant: boolean[];
}

/**
 * Tokenizes one conversation with the checkpoint's chat template. An assistant turn's tokens are those the
 * rendering of messages[0..i] adds after the generation prompt of messages[0..i-1]; an EOS is appended to each
 * assistant turn the template does not end with one, so the tuned model learns to stop.
 */
export function buildSftExample(ck: Checkpoint, messages: readonly { role: string; content: string }[]): SftExample {
  const tok = ck.tokenizer;
  const eos = ck.generation.eosTokenIds[0] ?? null;
  const ids: number[] = [];
  const assistant: boolean[] = [];
  let cursor = 0; // tokens of the template rendering already emitted (EOS we add is not part of it)
  for (let i = 0; i < messages.length; i++) {
    if (messages[i].role !== 'assistant') continue;
    const prefix = tok.applyChatTemplate(messages.slice(0, i), { addGenerationPrompt: true });
    const through = tok.applyChatTemplate(messages.slice(0, i + 1));
    for (const id of prefix.slice(cursor)) {
      ids.push(id);
      assistant.push(false);
    }
    const reply = through.slice(prefix.length);
    for (const id of reply) {
      ids.push(id);
      assistant.push(true);
    }
    if (eos !== null && reply[reply.length - 1] !== eos) {
      ids.push(eos);
      assistant.push(true);
    }
    cursor = through.length;
  }
  return { ids, assistant };
}

/** xorshift32 with visible state (saved in the training state for resume). */
export class Rng {
  constructor(public state: number) {
    this.state = state >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let s = this.state;
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    this.state = s >>> 0;
    return this.state / 4294967296;
  }
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }
}

/**
 * Which examples each step trains on: epochs over a seeded shuffle of n indices, reshuffled at each epoch's end.
 * The epoch, the index in it and the RNG's state are the resume point a training state keeps.
 */
export class EpochOrder {
  epoch = 0;
  index = 0;
  private order: number[];

  constructor(
    private readonly rng: Rng,
    n: number,
  ) {
    this.order = rng.shuffle(Array.from({ length: n }, (_, i) => i));
  }

  /** Continues at a saved position: replays the epochs' reshuffles so the order and RNG match the interrupted run. */
  restore(state: TrainingState, where: string): void {
    for (let e = 0; e < state.data.epoch; e++) this.order = this.rng.shuffle(this.order);
    if (this.rng.state !== state.rng[0]) throw new Error(`${where}: training state does not match this data (RNG differs); use a new out dir`);
    this.epoch = state.data.epoch;
    this.index = state.data.index;
  }

  /** The next k indices (k <= n: no index twice in one call). */
  take(k: number): number[] {
    const out: number[] = [];
    while (out.length < k) {
      if (this.index >= this.order.length) {
        this.epoch++;
        this.index = 0;
        this.order = this.rng.shuffle(this.order);
      }
      out.push(this.order[this.index++]);
    }
    return out;
  }

  /** What a training state's `rng` and `data` hold. */
  position(): { rng: number[]; data: { epoch: number; index: number } } {
    return { rng: [this.rng.state], data: { epoch: this.epoch, index: this.index } };
  }
}

/**
 * Writes a resume point into outDir: the HF checkpoint of the model's weights, then the training state (the model's
 * AdamW state and step, plus `state`). The old state file is removed first and the new one written last, so a kill
 * mid-write never pairs new weights with an old state. A LoRA model writes its merged weights (a plain checkpoint)
 * and its adapter in PEFT's format under `adapter/`, the tensors its resume loads onto the base (loadLoraResume).
 */
export async function saveResumePoint(
  model: TrainableModelHandle,
  o: { outDir: string; modelDir: string; spec: ModelSpec; state: Omit<TrainingState, 'step' | 'm' | 'v'> },
): Promise<void> {
  await rm(path.join(o.outDir, TRAINING_STATE_FILE), { force: true });
  const baseConfig = JSON.parse(readFileSync(path.join(o.modelDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  await writeHfCheckpoint(o.outDir, { spec: o.spec, weights: getMergedWeights(model), baseConfig, tokenizerDir: o.modelDir });
  const info = trainableModelInfo(model);
  const adapterDir = path.join(o.outDir, CHECKPOINT_ADAPTER_DIR);
  if (info.lora) {
    const config = { ...info.lora, baseModel: o.modelDir, taskType: info.numLabels > 0 ? ('SEQ_CLS' as const) : ('CAUSAL_LM' as const) };
    await writePeftAdapter(adapterDir, { spec: o.spec, weights: getAdapterWeights(model), config });
  } else {
    // An adapter left by an earlier LoRA run in this folder no longer describes these weights.
    for (const f of [PEFT_ADAPTER_CONFIG_FILE, PEFT_ADAPTER_WEIGHTS_FILE]) await rm(path.join(adapterDir, f), { force: true });
  }
  const s = getOptimizerState(model);
  await writeTrainingState(o.outDir, { step: s.step, m: s.m, v: s.v, ...o.state });
}

/** The counterpart of saveResumePoint: the data position and the AdamW state and step; returns the step to go on from. */
export function restoreResumePoint(model: TrainableModelHandle, order: EpochOrder, state: TrainingState, outDir: string): number {
  order.restore(state, outDir);
  setOptimizerState(model, { step: state.step, m: state.m, v: state.v });
  return state.step;
}

export interface PackedBatch {
  B: number;
  T: number;
  tokens: Int32Array;
  mask: Int32Array;
  targets: Int32Array;
  weights: Float32Array;
  realTokens: number;
}

/** Right-padded batch; position t predicts ids[t+1], weighted 1 when that token is an assistant token. */
export function packBatch(examples: SftExample[], seqLen: number): PackedBatch {
  const T = Math.max(2, Math.min(seqLen, Math.max(...examples.map((e) => e.ids.length)))) - 1;
  const B = examples.length;
  const tokens = new Int32Array(B * T);
  const mask = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  const weights = new Float32Array(B * T);
  let realTokens = 0;
  examples.forEach((e, b) => {
    const n = Math.min(e.ids.length, T + 1);
    for (let t = 0; t < n - 1; t++) {
      tokens[b * T + t] = e.ids[t];
      mask[b * T + t] = 1;
      targets[b * T + t] = e.ids[t + 1];
      weights[b * T + t] = e.assistant[t + 1] ? 1 : 0;
      realTokens++;
    }
  });
  return { B, T, tokens, mask, targets, weights, realTokens };
}

async function heldoutLoss(model: TrainableModelHandle, batches: PackedBatch[]): Promise<number> {
  let sum = 0;
  let w = 0;
  for (const b of batches) {
    const r = await trainStep(model, b, { targets: b.targets, weights: b.weights }, { gradScale: 0 });
    sum += r.loss * r.weightSum;
    w += r.weightSum;
  }
  zeroGrad(model);
  return w > 0 ? sum / w : NaN;
}

/** f32 FLOP/s of the engine's matmul on all cores (best of 5 runs of a 256x1024x1024 product). */
export function measurePeakFlops(): number {
  const T = 256, n = 1024, o = 1024;
  const x = new Float32Array(T * n).fill(0.5);
  const w = new Float32Array(o * n).fill(0.25);
  ops.matmul(x, w, { T, in: n, out: o });
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const t0 = process.hrtime.bigint();
    ops.matmul(x, w, { T, in: n, out: o });
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return (2 * T * n * o) / best;
}

/** Parses chat JSONL (`source` names it in errors) into tokenized examples with an assistant target below seqLen. */
export function parseSftJsonl(ck: Checkpoint, text: string, source: string, seqLen: number): SftExample[] {
  const examples: SftExample[] = [];
  parseJsonlLines(text, source, sftExportLineSchema, 'an SFT line ({"messages": [{role, content}, ...]})', (line) => {
    const ex = buildSftExample(ck, line.messages);
    if (ex.assistant.some((x, t) => x && t > 0 && t < seqLen)) examples.push(ex);
  });
  if (examples.length === 0) throw new Error(`${source}: no conversation with an assistant turn`);
  return examples;
}

/** After each optimizer step. tokensPerS: real (unpadded) tokens over time in train+optimizer steps so far. */
export interface SftProgress {
  step: number;
  steps: number;
  loss: number;
  tokensPerS: number;
  lr: number;
  gradNorm: number;
}

export interface SftOptions {
  modelDir: string;
  /** The JSONL text, a name for it in errors (a path, or `export <id>`) and for the training state (default: source). */
  data: { text: string; source: string; origin?: string };
  outDir: string;
  steps: number;
  lr: number;
  batchSize: number;
  /** Longest training sequence in tokens (default 256, capped at the model's max positions). */
  seqLen?: number;
  /** Fraction of conversations held out (at least one when > 0 and there are two or more). */
  heldout: number;
  seed: number;
  threads?: number;
  /** Write checkpoint + training state every N steps (0: only at the end). */
  checkpointEvery?: number;
  /**
   * Train LoRA adapters (frozen base; A initialised from `seed`) instead of every weight. outDir then holds the merged
   * weights (a plain HF checkpoint) and the PEFT adapter in `adapter/`.
   */
  lora?: Omit<LoraOptions, 'seed'>;
  /** Continue from outDir's training state when it holds one for these options. */
  resume?: boolean;
  onProgress?: (p: SftProgress) => void | Promise<void>;
  /** When resume finds a matching training state: the optimizer steps it holds. */
  onResume?: (step: number) => void | Promise<void>;
  /** Polled after each step: when true the run saves a checkpoint and throws SftStoppedError (resume continues it). */
  shouldStop?: () => boolean;
  /** After each intermediate checkpoint (step = optimizer steps it holds). */
  onCheckpoint?: (step: number) => void | Promise<void>;
}

export interface SftResult {
  steps: number;
  trainLossFirst: number;
  trainLossLast: number;
  heldoutLossBefore: number;
  heldoutLossAfter: number;
  tokensPerS: number;
  /** Model FLOPs (6 per trainable parameter and token; with LoRA 4 per frozen one: no weight gradient) / peakFlops. */
  mfu: number;
  /** Trainable parameters (with LoRA: the adapters). */
  numParams: number;
  /** Frozen parameters (the base under LoRA; 0 without). */
  frozenParams: number;
  lora: LoraInfo | null;
  /** f32 matmul probe of this run, FLOP/s. */
  peakFlops: number;
  trainCount: number;
  heldoutCount: number;
  outDir: string;
  /** Optimizer steps restored from outDir's training state (0: a fresh run). */
  resumedFromStep: number;
}

/** The weights a LoRA run resumes from: the base checkpoint's, plus the adapters saveResumePoint wrote in outDir. */
export async function loadLoraResume(baseWeights: ReadonlyMap<string, Float32Array>, outDir: string): Promise<Map<string, Float32Array>> {
  return new Map([...baseWeights, ...(await readPeftAdapter(path.join(outDir, CHECKPOINT_ADAPTER_DIR))).weights]);
}

/** Thrown by runSft when shouldStop asked it to stop; outDir then holds a checkpoint at `step`. */
export class SftStoppedError extends Error {
  constructor(readonly step: number) {
    super(`SFT stopped at step ${step} (checkpoint saved)`);
    this.name = 'SftStoppedError';
  }
}

/** Run metrics kept in the training state's `extra` so a resumed run reports the whole run. */
interface RunTotals {
  heldoutLossBefore: number;
  trainLossFirst: number;
  trainLossLast: number;
  tokens: number;
  seconds: number;
}

export async function runSft(o: SftOptions): Promise<SftResult> {
  const modelDir = path.resolve(o.modelDir);
  const outDir = path.resolve(o.outDir);
  const ck = await loadCheckpoint(modelDir);
  if (ck.format !== 'hf') throw new ModelLoadError('train sft needs a Hugging Face directory (GGUF is not trainable here)', modelDir);
  const seqLen = Math.min(o.seqLen ?? 256, ck.spec.maxPositionEmbeddings);
  const examples = parseSftJsonl(ck, o.data.text, o.data.source, seqLen);

  const rng = new Rng(o.seed + 1);
  rng.shuffle(examples);
  const nHeld = examples.length >= 2 && o.heldout > 0 ? Math.max(1, Math.floor(examples.length * o.heldout)) : 0;
  const held = examples.slice(0, nHeld);
  const train = examples.slice(nHeld);
  const heldBatches: PackedBatch[] = [];
  for (let i = 0; i < held.length; i += o.batchSize) heldBatches.push(packBatch(held.slice(i, i + o.batchSize), seqLen));

  const peak = measurePeakFlops();
  const opt: OptimizerConfig = {
    ...DEFAULT_OPTIMIZER,
    lr: o.lr,
    weightDecay: 0.0,
    warmupSteps: Math.min(10, Math.floor(o.steps / 10)),
    totalSteps: o.steps,
  };
  const lora = o.lora ? JSON.stringify({ rank: o.lora.rank, alpha: o.lora.alpha ?? null, targets: o.lora.targets ?? null }) : null;
  const runKey = { source: modelDir, data: o.data.origin ?? o.data.source, seed: o.seed, batchSize: o.batchSize, seqLen, steps: o.steps, lr: o.lr, lora };
  const saved = o.resume
    ? await resumableState(outDir, runKey, (num): RunTotals => ({
        heldoutLossBefore: num('heldoutLossBefore'),
        trainLossFirst: num('trainLossFirst'),
        trainLossLast: num('trainLossLast'),
        tokens: num('tokens'),
        seconds: num('seconds'),
      }))
    : null;
  // A LoRA resume rebuilds the model from the base plus the saved adapters: outDir's weights are merged ones.
  const initial = !saved ? ck.weights : o.lora ? await loadLoraResume(ck.weights, outDir) : (await loadCheckpoint(outDir)).weights;
  const model = createTrainableModel(ck.spec, initial, { threads: o.threads, lora: o.lora ? { ...o.lora, seed: o.seed } : undefined });
  const info = trainableModelInfo(model);
  const numParams = info.numParams;
  try {
    const data = new EpochOrder(rng, train.length);
    let totals: RunTotals;
    let start = 0;
    if (saved) {
      start = restoreResumePoint(model, data, saved.state, outDir);
      totals = saved.totals;
      await o.onResume?.(start);
    } else {
      const before = nHeld > 0 ? await heldoutLoss(model, heldBatches) : NaN;
      totals = { heldoutLossBefore: before, trainLossFirst: NaN, trainLossLast: NaN, tokens: 0, seconds: 0 };
    }

    const save = (): Promise<void> =>
      saveResumePoint(model, { outDir, modelDir, spec: ck.spec, state: { ...data.position(), optimizer: { ...opt }, extra: { ...runKey, totals } } });

    for (let step = start; step < o.steps; step++) {
      const pick = data.take(Math.min(o.batchSize, train.length)).map((i) => train[i]);
      const batch = packBatch(pick, seqLen);
      const t0 = process.hrtime.bigint();
      zeroGrad(model);
      const r = await trainStep(model, batch, { targets: batch.targets, weights: batch.weights });
      const s = await optimizerStep(model, opt);
      totals.seconds += Number(process.hrtime.bigint() - t0) / 1e9;
      totals.tokens += batch.realTokens;
      if (step === 0) totals.trainLossFirst = r.loss;
      totals.trainLossLast = r.loss;
      await o.onProgress?.({ step: step + 1, steps: o.steps, loss: r.loss, tokensPerS: totals.tokens / totals.seconds, lr: s.lr, gradNorm: s.gradNorm });
      const every = o.checkpointEvery ?? 0;
      const stopping = step + 1 < o.steps && (o.shouldStop?.() ?? false);
      if (step + 1 < o.steps && (stopping || (every > 0 && (step + 1) % every === 0))) {
        await save();
        await o.onCheckpoint?.(step + 1);
      }
      if (stopping) throw new SftStoppedError(step + 1);
    }
    const after = nHeld > 0 ? await heldoutLoss(model, heldBatches) : NaN;
    await save();
    const tps = totals.seconds > 0 ? totals.tokens / totals.seconds : 0;
    return {
      steps: o.steps,
      trainLossFirst: totals.trainLossFirst,
      trainLossLast: totals.trainLossLast,
      heldoutLossBefore: totals.heldoutLossBefore,
      heldoutLossAfter: after,
      tokensPerS: tps,
      mfu: ((6 * numParams + 4 * info.frozenParams) * tps) / peak,
      numParams,
      frozenParams: info.frozenParams,
      lora: info.lora,
      peakFlops: peak,
      trainCount: train.length,
      heldoutCount: nHeld,
      outDir,
      resumedFromStep: start,
    };
  } finally {
    freeTrainableModel(model);
  }
}

/**
 * outDir's training state when it was written by a run with the same key (`extra` holds the key's entries), with the
 * run totals `readTotals` takes from `extra.totals` (num: a number there, else NaN); null when absent or for other options.
 */
export async function resumableState<T>(outDir: string, key: Record<string, unknown>, readTotals: (num: (name: string) => number) => T): Promise<{ state: TrainingState; totals: T } | null> {
  if (!existsSync(path.join(outDir, TRAINING_STATE_FILE))) return null;
  const state = await readTrainingState(outDir);
  const extra = state.extra ?? {};
  // A key entry that is null matches a state without it (states written before that option existed).
  for (const [k, v] of Object.entries(key)) if ((extra[k] ?? null) !== (v ?? null)) return null;
  const t = extra.totals;
  if (typeof t !== 'object' || t === null) return null;
  const num = (name: string): number => {
    const v: unknown = Reflect.get(t, name);
    return typeof v === 'number' ? v : NaN;
  };
  return { state, totals: readTotals(num) };
}
