/**
 * Kahneman-Tversky Optimization (Ethayarajh et al. 2024) of a policy checkpoint on KTO JSONL (the admin export's
 * `{"prompt", "completion", "label"}` lines from thumbs, ratings and corrections), as TRL's KTOTrainer with
 * precomputed reference log-probs runs it: the examples are cut into fixed batches, and within each batch example i's
 * prompt is paired with example i-1's completion (cyclically) to estimate the KL reference point z0. The frozen
 * reference scores every example and every mismatched pair once up front; per step the policy scores a batch's pairs
 * (no gradient) and its examples through the per-token policy step, then the KTO loss (kto.loss.ts) and its gradient,
 * AdamW with warmup + cosine. Held-out implied-reward separation and margin before and after; an HF checkpoint plus
 * resumable training state in outDir; LoRA as DPO does it (the base is the reference). Shared by `flywheel train kto`
 * and the trainer's `kto` job; no CLI, queue or store code here.
 */
import path from 'node:path';
import { KTO_DEFAULTS, type ExportTool } from '@flywheel/contracts';
import { createTrainableModel, freeTrainableModel, optimizerStep, trainableModelInfo, zeroGrad, type LoraOptions, type TrainableModelHandle } from '@flywheel/kernels';
import type { Checkpoint, RewardChatMessage } from '@flywheel/model';
import { beginOrResume, checkpointAfterStep, parseKtoLines, resumableState, Rng, splitHeldOut, TrainingStoppedError, type ResumableRunOptions } from '@flywheel/train';
import { checkKtoLossOptions, ktoLoss, ktoWeightAdvice, rewardSeparation, type KtoLossOptions, type KtoLossResult } from './kto.loss';
import { backwardSides, createPolicy, forwardSides, loadChatPolicy, offlineOptimizer, offlineRunKey, responseSide, type ResponseSide } from './offline.training';

/** One line of KTO data, tokenized, with the frozen reference's summed completion log-prob (nats). */
export interface KtoExample {
  prompt: readonly RewardChatMessage[];
  completion: readonly RewardChatMessage[];
  tools: readonly ExportTool[];
  /** prompt + completion, only the completion scored. */
  side: ResponseSide;
  /** true: desirable (thumbs up, rating ≥ 4, a correction); false: undesirable. */
  label: boolean;
  reference: number;
}

/**
 * A fixed batch: its examples and the mismatched pairs its z0 is estimated on (example i's prompt and tools with
 * example i-1's completion, example 0 with the last one's: TRL's _get_kl_dataset), with their reference log-probs.
 * A batch of one has no mismatched pair (its z0 is 0).
 */
export interface KtoBatch {
  examples: KtoExample[];
  kl: ResponseSide[];
  referenceKl: Float64Array;
}

/** Parses KTO JSONL (`source` names it in errors) into tokenized examples (reference log-probs still 0). */
export function parseKtoJsonl(ck: Checkpoint, text: string, source: string, seqLen: number): KtoExample[] {
  return parseKtoLines(text, source, (prompt, completion, tools) => {
    const side = responseSide(ck, prompt, completion, seqLen, tools);
    return side && { prompt, completion, tools, side };
  }).map(({ value, label }) => ({ ...value, label, reference: 0 }));
}

/**
 * examples cut in order into batches of batchSize (a last batch of one joins the one before: alone it would have no
 * mismatched pair), each with its mismatched pairs tokenized. A pair left with no completion token is dropped.
 */
export function ktoBatches(ck: Checkpoint, examples: readonly KtoExample[], batchSize: number, seqLen: number): KtoBatch[] {
  const cuts: KtoExample[][] = [];
  for (let i = 0; i < examples.length; i += batchSize) cuts.push(examples.slice(i, i + batchSize));
  if (cuts.length > 1 && cuts[cuts.length - 1].length === 1) cuts[cuts.length - 2].push(...cuts.pop()!);
  return cuts.map((ex) => {
    const kl: ResponseSide[] = [];
    if (ex.length > 1) {
      ex.forEach((e, i) => {
        const side = responseSide(ck, e.prompt, ex[(i + ex.length - 1) % ex.length].completion, seqLen, e.tools);
        if (side) kl.push(side);
      });
    }
    return { examples: ex, kl, referenceKl: new Float64Array(kl.length) };
  });
}

/** Summed completion log-probs of a batch's mismatched pairs: one forward, no backward. */
const klLogps = async (model: TrainableModelHandle, b: KtoBatch, seqLen: number): Promise<Float64Array> =>
  b.kl.length > 0 ? (await forwardSides(model, b.kl, seqLen)).sums : new Float64Array(0);

/** Summed completion log-probs of a batch's examples and of its mismatched pairs: one forward each, no backward. */
async function batchLogps(model: TrainableModelHandle, b: KtoBatch, seqLen: number) {
  const kl = await klLogps(model, b, seqLen);
  const { sums } = await forwardSides(model, b.examples.map((e) => e.side), seqLen);
  return { policy: sums, kl };
}

const labelsOf = (b: KtoBatch): boolean[] => b.examples.map((e) => e.label);

function lossAgainstReference(b: KtoBatch, policy: ArrayLike<number>, policyKl: ArrayLike<number>, lo: KtoLossOptions): KtoLossResult {
  return ktoLoss({ policy, reference: b.examples.map((e) => e.reference), policyKl, referenceKl: b.referenceKl }, labelsOf(b), lo);
}

/** Held-out figures under the policy's current weights (no gradient). */
export interface KtoEvaluation {
  /** rewardSeparation of the implied rewards (0.5 when they all tie; NaN without both kinds). */
  separation: number;
  /** Mean desirable implied reward minus mean undesirable one (NaN without both kinds). */
  margin: number;
}

async function evaluateBatches(model: TrainableModelHandle, batches: readonly KtoBatch[], seqLen: number, lo: KtoLossOptions): Promise<KtoEvaluation> {
  const rewards: number[] = [];
  const labels: boolean[] = [];
  for (const b of batches) {
    const p = await batchLogps(model, b, seqLen);
    const r = lossAgainstReference(b, p.policy, p.kl, lo);
    rewards.push(...r.rewards);
    labels.push(...labelsOf(b));
  }
  const meanOf = (label: boolean) => {
    const xs = rewards.filter((_, i) => labels[i] === label);
    return xs.length > 0 ? xs.reduce((a, x) => a + x, 0) / xs.length : NaN;
  };
  return { separation: rewardSeparation(rewards, labels), margin: meanOf(true) - meanOf(false) };
}

/**
 * One KTO gradient over a batch: the mismatched pairs forward only (z0 is a constant, as TRL's no_grad), then the
 * examples as a (B, T) batch whose selected tokens each get d loss / d π of their sequence (the log-prob is a sum).
 */
async function ktoStep(model: TrainableModelHandle, b: KtoBatch, seqLen: number, lo: KtoLossOptions): Promise<KtoLossResult> {
  const kl = await klLogps(model, b, seqLen);
  const f = await forwardSides(model, b.examples.map((e) => e.side), seqLen);
  const r = lossAgainstReference(b, f.sums, kl, lo);
  await backwardSides(model, f, (row) => r.dPolicy[row]);
  return r;
}

/** After each optimizer step. Rewards: the step's mean implied rewards β (π - π_ref) per kind (NaN without one). */
export interface KtoProgress {
  step: number;
  steps: number;
  loss: number;
  /** The step's reference point z0 (nats). */
  kl: number;
  chosenReward: number;
  rejectedReward: number;
  margin: number;
  /** Desirable and undesirable examples in the step's batch. */
  desirable: number;
  undesirable: number;
  gradNorm: number;
  lr: number;
}

export interface KtoOptions extends ResumableRunOptions {
  /** The policy checkpoint (Hugging Face directory with a chat template); also the frozen reference. */
  modelDir: string;
  /** Peak learning rate (KTO_DEFAULTS.lr suits small models; billion-parameter ones want TRL's 5e-7..5e-6). */
  lr: number;
  /** β (default 0.1). */
  beta?: number;
  /** λ_D and λ_U (default 1): see ktoWeightAdvice for imbalanced data. */
  desirableWeight?: number;
  undesirableWeight?: number;
  /** Examples per optimizer step, at least 2 (a batch's z0 pairs its prompts with its other completions). */
  batchSize: number;
  /** Longest sequence in tokens (default 256, capped at the model's max positions); longer ones lose their start. */
  seqLen?: number;
  onProgress?: (p: KtoProgress) => void | Promise<void>;
  /** TRL's advice when the weights do not balance the train split's desirable and undesirable counts. */
  onWarning?: (message: string) => void;
  /** Train LoRA adapters (A initialised from `seed`) on the frozen base instead of every weight. */
  lora?: Omit<LoraOptions, 'seed'>;
}

/** Thrown by runKtoTraining when shouldStop asked it to stop; outDir then holds a checkpoint at `step`. */
export class KtoStoppedError extends TrainingStoppedError {
  constructor(step: number) {
    super(step, 'KTO');
  }
}

export interface KtoResult {
  examples: number;
  desirable: number;
  undesirable: number;
  trainExamples: number;
  heldoutExamples: number;
  /** Held-out rewardSeparation before (0.5: the untrained policy ties every example) and after; NaN without both kinds held out. */
  heldoutSeparationBefore: number;
  heldoutSeparation: number;
  /** Held-out mean desirable minus mean undesirable implied reward, before (0) and after. */
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
interface KtoTotals {
  heldoutSeparationBefore: number;
  heldoutMarginBefore: number;
  lossFirst: number;
  lossLast: number;
}

export async function runKtoTraining(o: KtoOptions): Promise<KtoResult> {
  const modelDir = path.resolve(o.modelDir);
  const outDir = path.resolve(o.outDir);
  const lo: Required<KtoLossOptions> = {
    beta: o.beta ?? KTO_DEFAULTS.beta,
    desirableWeight: o.desirableWeight ?? KTO_DEFAULTS.desirableWeight,
    undesirableWeight: o.undesirableWeight ?? KTO_DEFAULTS.undesirableWeight,
  };
  checkKtoLossOptions(lo);
  if (!Number.isInteger(o.batchSize) || o.batchSize < 2) {
    throw new Error(`train kto: batchSize must be an integer of at least 2 (the KL reference point pairs each prompt with another example's completion), got ${o.batchSize}`);
  }
  const ck = await loadChatPolicy(modelDir, 'train kto', 'KTO');
  const seqLen = Math.min(o.seqLen ?? 256, ck.spec.maxPositionEmbeddings);
  const examples = parseKtoJsonl(ck, o.data.text, o.data.source, seqLen);

  const rng = new Rng(o.seed + 1);
  const { held, train } = splitHeldOut(examples, o.heldout, rng);
  if (train.length < 2) throw new Error(`${o.data.source}: ${train.length} example(s) left to train on after holding out ${held.length}; KTO needs at least 2`);
  const trainDesirable = train.filter((e) => e.label).length;
  const advice = ktoWeightAdvice(trainDesirable, train.length - trainDesirable, lo.desirableWeight, lo.undesirableWeight);
  if (advice !== null) o.onWarning?.(advice);
  const trainBatches = ktoBatches(ck, train, o.batchSize, seqLen);
  const heldBatches = ktoBatches(ck, held, o.batchSize, seqLen);

  // The reference is the base checkpoint (never resumed weights) and never changes: score every example and every
  // mismatched pair once, batched as the policy will be, then free it.
  const reference = createTrainableModel(ck.spec, ck.weights, { threads: o.threads, frozen: true });
  try {
    for (const b of [...trainBatches, ...heldBatches]) {
      const ref = await batchLogps(reference, b, seqLen);
      b.examples.forEach((e, i) => (e.reference = ref.policy[i]));
      b.referenceKl.set(ref.kl);
    }
  } finally {
    freeTrainableModel(reference);
  }

  const opt = offlineOptimizer(o.lr, o.steps);
  const runKey = offlineRunKey(o, modelDir, seqLen, lo);
  const saved = o.resume
    ? await resumableState(outDir, runKey, (num): KtoTotals => ({
        heldoutSeparationBefore: num('heldoutSeparationBefore'),
        heldoutMarginBefore: num('heldoutMarginBefore'),
        lossFirst: num('lossFirst'),
        lossLast: num('lossLast'),
      }))
    : null;
  const model = await createPolicy(ck, { outDir, resumed: saved !== null, threads: o.threads, seed: o.seed, lora: o.lora });
  try {
    // The data order deals whole batches: a batch's mismatched pairs are its own examples' completions.
    const { data, start, totals, save } = await beginOrResume<KtoTotals>(model, saved, {
      rng,
      n: trainBatches.length,
      outDir,
      modelDir,
      spec: ck.spec,
      key: runKey,
      optimizer: opt,
      onResume: o.onResume,
      fresh: async () => {
        const before = await evaluateBatches(model, heldBatches, seqLen, lo);
        return { heldoutSeparationBefore: before.separation, heldoutMarginBefore: before.margin, lossFirst: NaN, lossLast: NaN };
      },
    });

    for (let step = start; step < o.steps; step++) {
      const batch = trainBatches[data.take(1)[0]];
      zeroGrad(model);
      const r = await ktoStep(model, batch, seqLen, lo);
      const s = await optimizerStep(model, opt);
      if (step === 0) totals.lossFirst = r.loss;
      totals.lossLast = r.loss;
      await o.onProgress?.({
        step: step + 1,
        steps: o.steps,
        loss: r.loss,
        kl: r.kl,
        chosenReward: r.chosenReward,
        rejectedReward: r.rejectedReward,
        margin: r.margin,
        desirable: r.desirable,
        undesirable: r.undesirable,
        gradNorm: s.gradNorm,
        lr: s.lr,
      });
      if (await checkpointAfterStep(step + 1, o.steps, o.checkpointEvery ?? 0, o, save)) throw new KtoStoppedError(step + 1);
    }
    const after = await evaluateBatches(model, heldBatches, seqLen, lo);
    await save();
    const info = trainableModelInfo(model);
    const desirable = examples.filter((e) => e.label).length;
    return {
      examples: examples.length,
      desirable,
      undesirable: examples.length - desirable,
      trainExamples: train.length,
      heldoutExamples: held.length,
      heldoutSeparationBefore: totals.heldoutSeparationBefore,
      heldoutSeparation: after.separation,
      heldoutMarginBefore: totals.heldoutMarginBefore,
      heldoutMarginAfter: after.margin,
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
