/**
 * Public face of @flywheel/kernels: the contract types and the checked functions over the native addon, the tensor
 * names and shapes of a model, and the seeded generators. The loader's raw binding and the files' shared check
 * helpers are deliberately not re-exported.
 */
export * from './kernels.types';
export * from './weight-shapes';
export * from './seeded-random';

/** The engine: model and KV cache handles, one step, machine info; the single ops for tests and tools. */
export {
  convertWeights,
  copyBlocks,
  createKvCache,
  createModel,
  createModelAsync,
  forward,
  freeCache,
  freeModel,
  kvCacheInfo,
  measureTriadGbps,
  modelInfo,
  nativeInfo,
  readKvLayer,
  setModelStepMode,
  setModelThreads,
  softmaxWeights,
  nucleusIds,
  topKIds,
} from './kernels';
export type { CreateModelOptions, KvCacheInfo, KvDtype, ModelInfo, NativeInfo, ServedDtype, StepMode } from './kernels';
export { isQuantMix, QUANT_MIXES, quantMixTypes, usesMoreBits } from './quant-mix';
export type { QuantMix } from './quant-mix';
export { ops } from './kernels.ops';
export type { AttentionShape } from './kernels.ops';
export { findRepoRoot, NATIVE_RELATIVE_PATH } from './native.loader';

/** The native training path: trainable models, LM / scalar-head / policy steps, AdamW, state for checkpoints. */
export * from './training.types';
export { createTrainableModel, defaultPositions, freeTrainableModel, trainableModelInfo } from './trainable-model';
export { policyBackward, policyForward, scoreStep, setLoraEnabled, trainStep, zeroGrad } from './training.steps';
export { checkOptimizerConfig, getOptimizerState, lrAtStep, optimizerStep, setOptimizerState } from './training.optimizer';
export { getAdapterWeights, getFrozenWeights, getGrads, getMergedWeights, getWeights, setWeights } from './training.state';
export { trainingOps } from './training.ops';

/** Naive reference kernels and random-model weights, for specs and benchmarks elsewhere. */
export * as kernelsReference from './kernels.reference';
/** Float64 references of the training ops (forward and backward), for specs elsewhere. */
export * as trainingReference from './training.reference';
