/**
 * Direct Preference Optimization (Rafailov et al. 2023) of a policy checkpoint on preference JSONL (the admin export's
 * `{"prompt", "chosen", "rejected"}` lines): the frozen reference's response log-probs computed once per pair up front,
 * then per step the policy's on both sides through the per-token policy step, the DPO loss (dpo.loss.ts) and its
 * gradient, AdamW with warmup + cosine; held-out implied-reward accuracy and margin before and after; an HF checkpoint
 * plus resumable training state in outDir. With LoRA the base stays frozen and the reference is that base: scored once
 * up front, no second copy held while training; outDir gets the merged weights and the PEFT adapter. Shared by `flywheel train dpo` and the trainer's `dpo` job; no CLI, queue
 * or store code here.
 */
import path from 'node:path';
import { DPO_DEFAULTS } from '@flywheel/contracts';
import { createTrainableModel, freeTrainableModel, optimizerStep, trainableModelInfo, zeroGrad, type LoraOptions, type TrainableModelHandle } from '@flywheel/kernels';
import type { Checkpoint } from '@flywheel/model';
import {
  beginOrResume,
  checkpointAfterStep,
  parsePreferenceLines,
  resumableState,
  Rng,
  splitHeldOut,
  TrainingStoppedError,
  type ResumableRunOptions,
} from '@flywheel/train';
import { checkDpoLossOptions, dpoLoss, type DpoLossResult } from './dpo.loss';
import { backwardSides, createPolicy, forwardSides, loadChatPolicy, offlineOptimizer, offlineRunKey, responseSide, type ResponseSide } from './offline.training';
import { meanStd } from './ppo.math';

/** One tokenized side: SFT layout, assistant[t] marks the side's response tokens (the ones its log-prob sums). */
export type DpoSide = ResponseSide;

/** A tokenized pair with the frozen reference's summed response log-probs (nats). */
export interface DpoPair {
  chosen: DpoSide;
  rejected: DpoSide;
  referenceChosen: number;
  referenceRejected: number;
}

/** prompt + response tokenized with only the response scored (responseSide in offline.training.ts). */
export const dpoSide = responseSide;

/** Parses preference JSONL (`source` names it in errors) into tokenized pairs (reference log-probs still 0). */
export function parseDpoJsonl(ck: Checkpoint, text: string, source: string, seqLen: number): DpoPair[] {
  return parsePreferenceLines(text, source, (prompt, response, tools) => {
    const side = responseSide(ck, prompt, response, seqLen, tools);
    return side && { ids: side.ids, value: side };
  }).map((p) => ({ ...p, referenceChosen: 0, referenceRejected: 0 }));
}

/** The rows of pairs as one batch: every chosen side, then every rejected side. */
const sidesOf = (pairs: readonly DpoPair[]): DpoSide[] => [...pairs.map((p) => p.chosen), ...pairs.map((p) => p.rejected)];

/** Summed response log-probs of both sides of each pair, `chunk` pairs (2 * chunk rows) per forward. */
async function pairLogps(model: TrainableModelHandle, pairs: readonly DpoPair[], seqLen: number, chunk = 8) {
  const chosen = new Float64Array(pairs.length);
  const rejected = new Float64Array(pairs.length);
  for (let i = 0; i < pairs.length; i += chunk) {
    const part = pairs.slice(i, i + chunk);
    const { sums } = await forwardSides(model, sidesOf(part), seqLen);
    chosen.set(sums.subarray(0, part.length), i);
    rejected.set(sums.subarray(part.length), i);
  }
  return { chosen, rejected };
}

const mean = (a: ArrayLike<number>): number => meanStd(a).mean;

interface LossOptions {
  beta: number;
  labelSmoothing: number;
}

/** dpoLoss of the policy's summed log-probs of the pairs' sides against the pairs' cached reference ones. */
function lossAgainstReference(pairs: readonly DpoPair[], chosen: ArrayLike<number>, rejected: ArrayLike<number>, lo: LossOptions): DpoLossResult {
  const referenceChosen = pairs.map((p) => p.referenceChosen);
  const referenceRejected = pairs.map((p) => p.referenceRejected);
  return dpoLoss({ policyChosen: chosen, policyRejected: rejected, referenceChosen, referenceRejected }, lo);
}

/** DPO loss and metrics of pairs under the policy's current weights (no gradient). */
async function evaluatePairs(model: TrainableModelHandle, pairs: readonly DpoPair[], seqLen: number, lo: LossOptions): Promise<DpoLossResult> {
  const policy = await pairLogps(model, pairs, seqLen);
  return lossAgainstReference(pairs, policy.chosen, policy.rejected, lo);
}

/**
 * One DPO gradient over P pairs as a (2P, T) batch (chosen rows, then rejected rows). The sequence log-prob is a sum
 * over its response tokens, so d loss / d logp of each selected token is d loss / d π of its sequence.
 */
async function dpoStep(model: TrainableModelHandle, pick: readonly DpoPair[], seqLen: number, lo: LossOptions): Promise<DpoLossResult> {
  const P = pick.length;
  const f = await forwardSides(model, sidesOf(pick), seqLen);
  const r = lossAgainstReference(pick, f.sums.subarray(0, P), f.sums.subarray(P), lo);
  await backwardSides(model, f, (row) => (row < P ? r.dPolicyChosen[row] : r.dPolicyRejected[row - P]));
  return r;
}

/** After each optimizer step; rewards are the step's mean implied rewards β (π - π_ref), margin their difference. */
export interface DpoProgress {
  step: number;
  steps: number;
  loss: number;
  /** Fraction of the step's pairs whose chosen implied reward is higher (ties count half). */
  accuracy: number;
  chosenReward: number;
  rejectedReward: number;
  margin: number;
  gradNorm: number;
  lr: number;
}

export interface DpoOptions extends ResumableRunOptions {
  /** The policy checkpoint (Hugging Face directory with a chat template); also the frozen reference. */
  modelDir: string;
  /** Peak learning rate (DPO_DEFAULTS.lr suits small models; billion-parameter ones want TRL's 5e-7..1e-6). */
  lr: number;
  /** β (default 0.1): larger keeps the policy closer to the reference. */
  beta?: number;
  /** ε in [0, 0.5) (default 0): conservative DPO for noisy labels. */
  labelSmoothing?: number;
  /** Preference pairs per optimizer step (each is two sequences). */
  batchSize: number;
  /** Longest sequence in tokens (default 256, capped at the model's max positions); longer ones lose their start. */
  seqLen?: number;
  onProgress?: (p: DpoProgress) => void | Promise<void>;
  /** Train LoRA adapters (A initialised from `seed`) on the frozen base instead of every weight. */
  lora?: Omit<LoraOptions, 'seed'>;
}

/** Thrown by runDpoTraining when shouldStop asked it to stop; outDir then holds a checkpoint at `step`. */
export class DpoStoppedError extends TrainingStoppedError {
  constructor(step: number) {
    super(step, 'DPO');
  }
}

export interface DpoResult {
  pairs: number;
  trainPairs: number;
  heldoutPairs: number;
  /** Held-out implied-reward accuracy before (0.5: the untrained policy ties every pair) and after training; NaN without held-out pairs. */
  heldoutAccuracyBefore: number;
  heldoutAccuracy: number;
  /** Held-out mean implied-reward margin β((πc - rc) - (πr - rr)) before and after. */
  heldoutMarginBefore: number;
  heldoutMarginAfter: number;
  lossFirst: number;
  lossLast: number;
  steps: number;
  outDir: string;
  /** Optimizer steps restored from outDir's training state (0: a fresh run). */
  resumedFromStep: number;
  /** Trainable parameters (with LoRA: the adapters) and frozen ones (the base under LoRA; 0 without). */
  trainableParams: number;
  frozenParams: number;
}

/** Run metrics kept in the training state's `extra` so a resumed run reports the whole run. */
interface DpoTotals {
  heldoutAccuracyBefore: number;
  heldoutMarginBefore: number;
  lossFirst: number;
  lossLast: number;
}

export async function runDpoTraining(o: DpoOptions): Promise<DpoResult> {
  const modelDir = path.resolve(o.modelDir);
  const outDir = path.resolve(o.outDir);
  const lo: LossOptions = { beta: o.beta ?? DPO_DEFAULTS.beta, labelSmoothing: o.labelSmoothing ?? DPO_DEFAULTS.labelSmoothing };
  checkDpoLossOptions(lo);
  const ck = await loadChatPolicy(modelDir, 'train dpo', 'preference');
  const seqLen = Math.min(o.seqLen ?? 256, ck.spec.maxPositionEmbeddings);
  const pairs = parseDpoJsonl(ck, o.data.text, o.data.source, seqLen);

  const rng = new Rng(o.seed + 1);
  const { held, train } = splitHeldOut(pairs, o.heldout, rng);
  const nHeld = held.length;
  if (train.length === 0) throw new Error(`${o.data.source}: no pair left to train on after holding out ${nHeld}`);

  // The reference is the base checkpoint (never resumed weights) and never changes: score every pair once, then free it.
  const reference = createTrainableModel(ck.spec, ck.weights, { threads: o.threads, frozen: true });
  try {
    const ref = await pairLogps(reference, pairs, seqLen);
    pairs.forEach((p, i) => {
      p.referenceChosen = ref.chosen[i];
      p.referenceRejected = ref.rejected[i];
    });
  } finally {
    freeTrainableModel(reference);
  }

  const opt = offlineOptimizer(o.lr, o.steps);
  const runKey = offlineRunKey(o, modelDir, seqLen, lo);
  const saved = o.resume
    ? await resumableState(outDir, runKey, (num): DpoTotals => ({
        heldoutAccuracyBefore: num('heldoutAccuracyBefore'),
        heldoutMarginBefore: num('heldoutMarginBefore'),
        lossFirst: num('lossFirst'),
        lossLast: num('lossLast'),
      }))
    : null;
  const model = await createPolicy(ck, { outDir, resumed: saved !== null, threads: o.threads, seed: o.seed, lora: o.lora });
  try {
    const { data, start, totals, save } = await beginOrResume<DpoTotals>(model, saved, {
      rng,
      n: train.length,
      outDir,
      modelDir,
      spec: ck.spec,
      key: runKey,
      optimizer: opt,
      onResume: o.onResume,
      fresh: async () => {
        const before = await evaluatePairs(model, held, seqLen, lo);
        return { heldoutAccuracyBefore: before.accuracy, heldoutMarginBefore: mean(before.margins), lossFirst: NaN, lossLast: NaN };
      },
    });

    for (let step = start; step < o.steps; step++) {
      const pick = data.take(Math.min(o.batchSize, train.length)).map((i) => train[i]);
      zeroGrad(model);
      const r = await dpoStep(model, pick, seqLen, lo);
      const s = await optimizerStep(model, opt);
      if (step === 0) totals.lossFirst = r.loss;
      totals.lossLast = r.loss;
      await o.onProgress?.({
        step: step + 1,
        steps: o.steps,
        loss: r.loss,
        accuracy: r.accuracy,
        chosenReward: mean(r.chosenRewards),
        rejectedReward: mean(r.rejectedRewards),
        margin: mean(r.margins),
        gradNorm: s.gradNorm,
        lr: s.lr,
      });
      if (await checkpointAfterStep(step + 1, o.steps, o.checkpointEvery ?? 0, o, save)) throw new DpoStoppedError(step + 1);
    }
    const after = await evaluatePairs(model, held, seqLen, lo);
    await save();
    const info = trainableModelInfo(model);
    return {
      pairs: pairs.length,
      trainPairs: train.length,
      heldoutPairs: nHeld,
      heldoutAccuracyBefore: totals.heldoutAccuracyBefore,
      heldoutAccuracy: after.accuracy,
      heldoutMarginBefore: totals.heldoutMarginBefore,
      heldoutMarginAfter: mean(after.margins),
      lossFirst: totals.lossFirst,
      lossLast: totals.lossLast,
      steps: o.steps,
      outDir,
      resumedFromStep: start,
      trainableParams: info.numParams,
      frozenParams: info.frozenParams,
    };
  } finally {
    freeTrainableModel(model);
  }
}
