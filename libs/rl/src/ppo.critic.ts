/**
 * The PPO critic: a value model (the policy's architecture with a one-label scalar head read at every slot), started
 * from a reward model or from the policy with a zero head, trained in full or, under LoRA, as adapters plus the head
 * on a frozen base (no gradients or AdamW moments for the base); its values over packed rollouts and its clipped
 * value-loss update. Not the PPO loop (ppo.trainer.ts) nor the loss math (ppo.math.ts).
 */
import type { LoraJobOptions } from '@flywheel/contracts';
import {
  createTrainableModel,
  optimizerStep,
  policyBackward,
  policyForward,
  SCORE_HEAD_WEIGHT,
  zeroGrad,
  type ModelSpec,
  type OptimizerConfig,
  type TrainableModelHandle,
  type WeightMap,
} from '@flywheel/kernels';
import { loadCheckpoint, ModelLoadError } from '@flywheel/model';
import { loadLoraResume } from '@flywheel/train';
import { clippedValueLoss, type ValueLossResult } from './ppo.math';
import { gather, scatter, type ActionBatch } from './rollout';

/** The value head (HF LlamaForSequenceClassification's `score`, one label), trainable under LoRA too. */
export const VALUE_HEAD = SCORE_HEAD_WEIGHT;

export interface CriticOptions {
  spec: ModelSpec;
  /** The starting weights, value head included: a reward model's, or the policy's with a zero head. */
  init: () => WeightMap;
  /** Adapters on a frozen base (the head stays trainable), or null: every weight trains. */
  lora: LoraJobOptions | null;
  /** Seed of the adapters' A. */
  seed: number;
  threads?: number;
}

/**
 * A fresh critic, or (resumeDir) the one a resume point holds: its saved weights, or under LoRA its starting base plus
 * the saved adapters and value head.
 */
export async function createCritic(o: CriticOptions, resumeDir: string | null): Promise<TrainableModelHandle> {
  let weights: WeightMap;
  if (resumeDir === null) weights = o.init();
  else if (o.lora === null) weights = (await loadCheckpoint(resumeDir)).weights;
  else weights = await loadLoraCriticResume(o.init(), resumeDir);
  return createTrainableModel(o.spec, weights, { threads: o.threads, numLabels: 1, lora: o.lora ? { ...o.lora, seed: o.seed } : undefined });
}

/**
 * A LoRA critic's resume weights: the base, then the saved adapter, which carries the trained head (it trains, so the
 * base's is stale). An adapter written before heads went into adapters has none: the head then comes from the saved
 * checkpoint, whose merged projections are not read.
 */
async function loadLoraCriticResume(base: WeightMap, dir: string): Promise<Map<string, Float32Array>> {
  const weights = await loadLoraResume(base, dir);
  // loadLoraResume lays the adapter's tensors over the base's: a head that is not the base's own array came from it.
  if (weights.get(VALUE_HEAD) !== base.get(VALUE_HEAD)) return weights;
  const head = (await loadCheckpoint(dir)).weights.get(VALUE_HEAD);
  if (head === undefined) throw new ModelLoadError(`the saved critic has no value head (${VALUE_HEAD})`, dir);
  weights.set(VALUE_HEAD, head);
  return weights;
}

/** V at every action of a packed batch, in action order (ppo.math.ts). */
export async function criticValues(critic: TrainableModelHandle, all: ActionBatch): Promise<Float64Array> {
  const n = all.batch.B * all.batch.T;
  const f = await policyForward(critic, all.batch, { targets: new Int32Array(n), sel: new Int32Array(n), values: true });
  return gather(f.values!, all.slots);
}

/**
 * One AdamW step on a mini-batch's clipped value loss; valuesOld and returns are its actions' in its action order.
 * Under LoRA the gradient reaches the adapters and the head only (the path training.lora.spec.ts checks against
 * central differences: sum(dvalues * values) with a trainable value head).
 */
export async function criticUpdate(
  critic: TrainableModelHandle,
  sub: ActionBatch,
  old: { valuesOld: Float64Array; returns: Float64Array },
  valueClip: number,
  opt: OptimizerConfig,
): Promise<ValueLossResult> {
  const n = sub.batch.B * sub.batch.T;
  zeroGrad(critic);
  const f = await policyForward(critic, sub.batch, { targets: new Int32Array(n), sel: new Int32Array(n), values: true });
  const vl = clippedValueLoss(gather(f.values!, sub.slots), old.valuesOld, old.returns, valueClip);
  await policyBackward(critic, f.pass, { dvalues: scatter(vl.dvalues, sub.slots, n) });
  await optimizerStep(critic, opt);
  return vl;
}
