/**
 * Supervised fine-tuning on chat JSONL (`{"messages": [...]}`, the flywheel's SFT export format) with the native
 * training path: loss only on assistant tokens, AdamW with warmup + cosine, a held-out split evaluated before and
 * after, an HF checkpoint + resumable training state in outDir (every `checkpointEvery` steps and at the end), the
 * MFU of the run. Shared by `flywheel train sft` and the trainer's BullMQ `sft` job; no CLI, queue or store code here,
 * and no tokenization (sft.examples.ts) or resume I/O (resume-point.ts).
 */
import path from 'node:path';
import {
  createTrainableModel,
  freeTrainableModel,
  optimizerStep,
  trainableModelInfo,
  trainStep,
  zeroGrad,
  DEFAULT_OPTIMIZER,
  type LoraInfo,
  type LoraOptions,
  type OptimizerConfig,
  type TrainableModelHandle,
} from '@flywheel/kernels';
import { loadCheckpoint, ModelLoadError } from '@flywheel/model';
import { splitHeldOut } from './epoch-order';
import { measurePeakFlops } from './mfu.probe';
import { beginOrResume, checkpointAfterStep, loadLoraResume, resumableState, TrainingStoppedError } from './resume-point';
import { Rng } from './rng';
import { packBatch, parseSftJsonl, type PackedBatch } from './sft.examples';
import type { ResumableRunOptions } from './trainer.options';

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

/** After each optimizer step. tokensPerS: real (unpadded) tokens over time in train+optimizer steps so far. */
export interface SftProgress {
  step: number;
  steps: number;
  loss: number;
  tokensPerS: number;
  lr: number;
  gradNorm: number;
}

export interface SftOptions extends ResumableRunOptions {
  /**
   * Train LoRA adapters (frozen base; A initialised from `seed`) instead of every weight. outDir then holds the merged
   * weights (a plain HF checkpoint) and the PEFT adapter in `adapter/`.
   */
  lora?: Omit<LoraOptions, 'seed'>;
  onProgress?: (p: SftProgress) => void | Promise<void>;
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

/** Thrown by runSft when shouldStop asked it to stop; outDir then holds a checkpoint at `step`. */
export class SftStoppedError extends TrainingStoppedError {
  constructor(step: number) {
    super(step, 'SFT');
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
  const { held, train } = splitHeldOut(examples, o.heldout, rng);
  const nHeld = held.length;
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
    const { data, start, totals, save } = await beginOrResume<RunTotals>(model, saved, {
      rng,
      n: train.length,
      outDir,
      modelDir,
      spec: ck.spec,
      key: runKey,
      optimizer: opt,
      onResume: o.onResume,
      fresh: async () => ({ heldoutLossBefore: nHeld > 0 ? await heldoutLoss(model, heldBatches) : NaN, trainLossFirst: NaN, trainLossLast: NaN, tokens: 0, seconds: 0 }),
    });

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
      if (await checkpointAfterStep(step + 1, o.steps, o.checkpointEvery ?? 0, o, save)) throw new SftStoppedError(step + 1);
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
