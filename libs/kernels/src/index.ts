/**
 * Public face of @flywheel/kernels: the contract types and the checked functions over the native addon.
 * The loader's raw binding is deliberately not re-exported.
 */
export * from './kernels.types';
export * from './kernels';
export { findRepoRoot, NATIVE_RELATIVE_PATH } from './native.loader';
/** Naive reference kernels, a seeded RNG and random-model weights, for specs and benchmarks elsewhere. */
export * as kernelsReference from './kernels.reference';
/** The native training path: trainable models, LM / scalar-head steps, AdamW, state for checkpoints. */
export * from './training';
/** Float64 references of the training ops (forward and backward), for specs elsewhere. */
export * as trainingReference from './training.reference';
