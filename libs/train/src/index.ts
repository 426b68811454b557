/**
 * @flywheel/train: the foundations every trainer shares — the training RNG and data order, resume points (one
 * format: an HF checkpoint plus training_state.json and optimizer.safetensors), the training-state and PEFT adapter
 * files, JSONL training data — and the SFT (+ LoRA) and reward-model trainers. Builds on @flywheel/kernels (the native
 * training path) and @flywheel/model (checkpoints, tokenizers, scoring); @flywheel/rl builds on it. Not the BullMQ
 * jobs (apps/trainer) nor the CLI (scripts/cli).
 */
export * from './rng';
export * from './epoch-order';
export * from './pairwise.math';
export * from './jsonl.lines';
export { OPTIMIZER_STATE_FILE, TRAINING_STATE_FILE, readTrainingState, writeTrainedCheckpoint, writeTrainingState } from './training-checkpoint.io';
export type { TrainingState } from './training-checkpoint.io';
export * from './peft-adapter.io';
export * from './resume-point';
export type { ResumableRunOptions, TrainRunOptions } from './trainer.options';
export * from './mfu.probe';
export * from './sft.examples';
export * from './sft.trainer';
export * from './reward.trainer';
export * from './prompt-split';
