/**
 * Public API of the generation engine: Engine (continuous batching over a paged KV cache), its request/event
 * types and typed errors, the native factory, and the pieces (block manager, sampler, detokenizer) for reuse.
 * The TypeScript reference forward is exported for golden tests of the native kernels, not for serving.
 */
export * from './engine.types';
export { Engine, DEFAULT_SAMPLING, engineConfigSchema } from './engine';
export type { EngineConfig, EngineConfigInput, EngineDeps } from './engine';
export { createNativeEngine, createNativeEngineAsync, resolveEngineDtype } from './engine.factory';
export type { EngineDtypeChoice, NativeEngine, NativeEngineOptions, ServableCheckpoint } from './engine.factory';
export { NativeStepRunner, tokenizerDecoder } from './native-runner';
export type { DecodingTokenizer, NativeRunnerOptions } from './native-runner';
export { BlockManager, hashBlock } from './block-manager';
export { FramePacer } from './frame-pacer';
export type { BlockCopy, BlockManagerOptions } from './block-manager';
export { SequenceSampler, Xoshiro128, MAX_TOP_LOGPROBS } from './sampler';
export { IncrementalDetokenizer, StopStringMatcher } from './detokenizer';
export { Scheduler } from './scheduler';
export type { SchedulableSequence, SchedulerLimits, ScheduledChunk, ScheduledStep } from './scheduler';
export { ReferenceRunner } from './reference-runner';
export type { LlamaSpec } from './reference-runner';
