/**
 * Reward-model training on preference JSONL (`{"prompt": [...], "chosen": [...], "rejected": [...]}`, the admin
 * export's preference format): a policy checkpoint plus a fresh zero scalar head (`score.weight`, num_labels 1),
 * the Bradley–Terry pairwise loss -log σ(r_chosen - r_rejected), AdamW with warmup + cosine, held-out pairwise
 * accuracy before and after; writes the policy family's sequence-classification HF checkpoint (Llama/Mistral:
 * LlamaForSequenceClassification, Gemma 2: Gemma2ForSequenceClassification, Gemma 3: Gemma3TextForSequenceClassification,
 * ...; safetensors.writer names it). Shared by `flywheel train reward`
 * and the trainer's `reward-train` job; no CLI, queue or store code here, and no resume (runs are short).
 */
import path from 'node:path';
import {
  createTrainableModel,
  freeTrainableModel,
  optimizerStep,
  scoreStep,
  trainableModelInfo,
  zeroGrad,
  DEFAULT_OPTIMIZER,
  type LoraOptions,
  type OptimizerConfig,
  type TrainableModelHandle,
} from '@flywheel/kernels';
import { loadCheckpoint, ModelLoadError, packScoreBatch, rewardConversationIds, scoreSequences, type Checkpoint } from '@flywheel/model';
import { EpochOrder, splitHeldOut } from './epoch-order';
import { parsePreferenceLines } from './jsonl.lines';
import { logSigmoid, pairCredit, sigmoid } from './pairwise.math';
import { Rng } from './rng';
import type { TrainRunOptions } from './trainer.options';
import { writeModelOutputs } from './resume-point';

/** One tokenized preference pair. */
export interface PreferencePair {
  chosen: number[];
  rejected: number[];
}

/** Parses preference JSONL (`source` names it in errors) into tokenized pairs; identical sides are dropped. */
export function parsePreferenceJsonl(ck: Checkpoint, text: string, source: string, seqLen: number): PreferencePair[] {
  return parsePreferenceLines(text, source, (prompt, response) => {
    const ids = rewardConversationIds(ck, [...prompt, ...response], seqLen);
    return { ids, value: ids };
  });
}

/** Mean pairCredit over pairs (pairwise accuracy); NaN without pairs. */
export async function pairwiseAccuracy(model: TrainableModelHandle, pairs: readonly PreferencePair[]): Promise<number> {
  if (pairs.length === 0) return NaN;
  const scores = await scoreSequences(model, pairs.flatMap((p) => [p.chosen, p.rejected]));
  let right = 0;
  for (let i = 0; i < pairs.length; i++) right += pairCredit(scores[2 * i] - scores[2 * i + 1]);
  return right / pairs.length;
}

/**
 * One Bradley–Terry step over P pairs as a (2P, T) batch (chosen rows, then rejected rows). loss = mean over pairs of
 * -log σ(d), d = r_c - r_r, so dL/dr_c = -σ(-d)/P and dL/dr_r = +σ(-d)/P; scoreStep runs the backward with those.
 */
async function bradleyTerryStep(model: TrainableModelHandle, pairs: readonly PreferencePair[]): Promise<{ loss: number; accuracy: number }> {
  const P = pairs.length;
  const batch = packScoreBatch([...pairs.map((p) => p.chosen), ...pairs.map((p) => p.rejected)]);
  const scores = await scoreStep(model, batch);
  const dScores = new Float32Array(2 * P);
  let loss = 0;
  let right = 0;
  for (let i = 0; i < P; i++) {
    const d = scores[i] - scores[P + i];
    loss -= logSigmoid(d) / P;
    right += pairCredit(d);
    const g = sigmoid(-d) / P;
    dScores[i] = -g;
    dScores[P + i] = g;
  }
  await scoreStep(model, batch, dScores);
  return { loss, accuracy: right / P };
}

export interface RewardTrainProgressInfo {
  step: number;
  steps: number;
  loss: number;
  accuracy: number;
  lr: number;
  gradNorm: number;
}

export interface RewardTrainOptions extends TrainRunOptions {
  /** The policy checkpoint the reward model starts from (its score head is replaced by zeros). */
  modelDir: string;
  /** Preference pairs per optimizer step. */
  batchSize: number;
  /** Longest sequence in tokens (default 256, capped at the model's max positions); longer ones lose their start. */
  seqLen?: number;
  onProgress?: (p: RewardTrainProgressInfo) => void | Promise<void>;
  /** Train LoRA adapters (A initialised from `seed`) and the score head on the frozen base instead of every weight. */
  lora?: Omit<LoraOptions, 'seed'>;
}

export interface RewardTrainResult {
  pairs: number;
  trainPairs: number;
  heldoutPairs: number;
  heldoutAccuracyBefore: number;
  heldoutAccuracy: number;
  lossFirst: number;
  lossLast: number;
  steps: number;
  outDir: string;
  /** Trainable parameters (with LoRA: the adapters and the score head) and frozen ones (0 without LoRA). */
  trainableParams: number;
  frozenParams: number;
}

export async function runRewardTraining(o: RewardTrainOptions): Promise<RewardTrainResult> {
  const modelDir = path.resolve(o.modelDir);
  const outDir = path.resolve(o.outDir);
  const ck = await loadCheckpoint(modelDir);
  if (ck.format !== 'hf') throw new ModelLoadError('train reward needs a Hugging Face directory (GGUF is not trainable here)', modelDir);
  if (ck.chatTemplate === null) throw new ModelLoadError('train reward needs a chat template (preference lines are chat messages)', modelDir);
  const seqLen = Math.min(o.seqLen ?? 256, ck.spec.maxPositionEmbeddings);
  const pairs = parsePreferenceJsonl(ck, o.data.text, o.data.source, seqLen);

  const rng = new Rng(o.seed + 1);
  const { held, train } = splitHeldOut(pairs, o.heldout, rng);
  const nHeld = held.length;
  if (train.length === 0) throw new Error(`${o.data.source}: no pair left to train on after holding out ${nHeld}`);

  // A fresh head: zeros, so every pair starts at loss log 2 and the backbone's gradient starts from the head's.
  const weights = new Map(ck.weights);
  weights.set('score.weight', new Float32Array(ck.spec.hiddenSize));
  const model = createTrainableModel(ck.spec, weights, { threads: o.threads, numLabels: 1, lora: o.lora ? { ...o.lora, seed: o.seed } : undefined });
  const opt: OptimizerConfig = {
    ...DEFAULT_OPTIMIZER,
    lr: o.lr,
    weightDecay: 0,
    warmupSteps: Math.min(10, Math.floor(o.steps / 10)),
    totalSteps: o.steps,
  };
  try {
    const before = await pairwiseAccuracy(model, held);
    let lossFirst = NaN;
    let lossLast = NaN;
    const data = EpochOrder.reshuffled(rng, train.length);
    for (let step = 0; step < o.steps; step++) {
      const pick = data.take(Math.min(o.batchSize, train.length)).map((i) => train[i]);
      zeroGrad(model);
      const r = await bradleyTerryStep(model, pick);
      const s = await optimizerStep(model, opt);
      if (step === 0) lossFirst = r.loss;
      lossLast = r.loss;
      await o.onProgress?.({ step: step + 1, steps: o.steps, loss: r.loss, accuracy: r.accuracy, lr: s.lr, gradNorm: s.gradNorm });
    }
    const after = await pairwiseAccuracy(model, held);
    await writeModelOutputs(model, { outDir, modelDir, spec: ck.spec });
    const info = trainableModelInfo(model);
    return {
      pairs: pairs.length,
      trainPairs: train.length,
      heldoutPairs: nHeld,
      heldoutAccuracyBefore: before,
      heldoutAccuracy: after,
      lossFirst,
      lossLast,
      steps: o.steps,
      outDir,
      trainableParams: info.numParams,
      frozenParams: info.frozenParams,
    };
  } finally {
    freeTrainableModel(model);
  }
}
