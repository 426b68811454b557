/**
 * Copies of a trainable model's tensors by HF (or PEFT) name: the trainable weights, the LoRA-merged and frozen
 * ones, the adapters, the gradients; and replacing the trainable weights. For export, checks and resume; the AdamW
 * state is in training.optimizer.ts. A frozen (forward-only) model's weights can be read, not replaced, and it has
 * no gradients.
 */
import type { WeightMap } from './kernels.types';
import { joinState, requireTrainable, splitState, trainableState } from './trainable-model';
import { nativeTraining } from './training.native';
import type { TrainableModelHandle } from './training.types';
import { trainingArgs } from './argument.checks';

/**
 * Copies of the current trainable weights by name: without LoRA every tensor (a WeightMap createModel / the
 * safetensors writer accept); with LoRA the adapters (PEFT names) and the score head. Export getMergedWeights.
 */
export function getWeights(model: TrainableModelHandle): Map<string, Float32Array> {
  const s = trainableState(model);
  return splitState(s, nativeTraining().trainGetState(s.native, 'params'));
}

/**
 * The full HF weight map of the model as it computes: with LoRA each targeted W replaced by W + alpha/r * B A
 * (a plain checkpoint, what an export writes); without LoRA the same as getWeights.
 */
export function getMergedWeights(model: TrainableModelHandle): Map<string, Float32Array> {
  const s = trainableState(model);
  if (s.lora === null) return getWeights(model);
  const out = splitState(s, nativeTraining().trainMergedWeights(s.native), s.frozenLayout);
  for (const [name, t] of getWeights(model)) if (!name.includes('.lora_')) out.set(name, t);
  return out;
}

/** The LoRA adapters by PEFT name (adapter_model.safetensors' tensors); throws for a model without LoRA. */
export function getAdapterWeights(model: TrainableModelHandle): Map<string, Float32Array> {
  const s = trainableState(model);
  if (s.lora === null) trainingArgs.fail('this model has no LoRA adapters');
  return new Map([...getWeights(model)].filter(([name]) => name.includes('.lora_')));
}

/** Copies of the frozen base tensors (LoRA) by HF name, as held: never changed by training. Empty without LoRA. */
export function getFrozenWeights(model: TrainableModelHandle): Map<string, Float32Array> {
  const s = trainableState(model);
  if (s.numFrozen === 0) return new Map();
  return splitState(s, nativeTraining().trainGetState(s.native, 'frozen'), s.frozenLayout);
}

/** Copies of the accumulated gradients by HF name. */
export function getGrads(model: TrainableModelHandle): Map<string, Float32Array> {
  const s = trainableState(model);
  requireTrainable(s, 'getGrads');
  return splitState(s, nativeTraining().trainGetState(s.native, 'grads'));
}

/** Replaces every trainable weight (all of getWeights' tensors required; with LoRA the adapters and score head). */
export function setWeights(model: TrainableModelHandle, weights: WeightMap): void {
  const s = trainableState(model);
  if (s.frozen) trainingArgs.fail('setWeights: a frozen model never changes its weights (create a new one from them)');
  nativeTraining().trainSetState(s.native, 'params', joinState(s, weights, 'setWeights'));
}
