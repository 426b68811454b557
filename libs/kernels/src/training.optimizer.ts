/**
 * AdamW over a trainable model's accumulated gradients: the checked configuration, one optimizer step (global-norm
 * clipping, warmup + cosine schedule), the moments and step as a state for checkpoints, and the schedule's lr in
 * TypeScript. Not the gradients (training.steps.ts).
 */
import { trainingArgs } from './argument.checks';
import { joinState, requireTrainable, splitState, trainableState } from './trainable-model';
import { nativeTraining } from './training.native';
import type { OptimizerConfig, OptimizerState, OptimizerStepResult, TrainableModelHandle } from './training.types';

export function checkOptimizerConfig(c: OptimizerConfig): OptimizerConfig {
  return {
    lr: trainingArgs.finite(c.lr, 'lr', 0),
    beta1: trainingArgs.finite(c.beta1, 'beta1', 0, 0.999999),
    beta2: trainingArgs.finite(c.beta2, 'beta2', 0, 0.999999999),
    eps: trainingArgs.finite(c.eps, 'eps', 0),
    weightDecay: trainingArgs.finite(c.weightDecay, 'weightDecay', 0),
    maxGradNorm: trainingArgs.finite(c.maxGradNorm, 'maxGradNorm'),
    warmupSteps: trainingArgs.int(c.warmupSteps, 'warmupSteps', 0),
    totalSteps: trainingArgs.int(c.totalSteps, 'totalSteps', 0),
    minLrRatio: trainingArgs.finite(c.minLrRatio, 'minLrRatio', 0, 1),
  };
}

/** Clips the accumulated gradients by global norm, applies AdamW at the scheduled lr, advances the step. */
export function optimizerStep(model: TrainableModelHandle, config: OptimizerConfig): Promise<OptimizerStepResult> {
  const s = trainableState(model);
  requireTrainable(s, 'optimizerStep');
  return nativeTraining().trainOptimizerStep(s.native, checkOptimizerConfig(config));
}

export function getOptimizerState(model: TrainableModelHandle): OptimizerState {
  const s = trainableState(model);
  requireTrainable(s, 'getOptimizerState');
  const raw = nativeTraining();
  return {
    step: raw.trainModelLayout(s.native).step,
    m: splitState(s, raw.trainGetState(s.native, 'adamM')),
    v: splitState(s, raw.trainGetState(s.native, 'adamV')),
  };
}

export function setOptimizerState(model: TrainableModelHandle, opt: OptimizerState): void {
  const s = trainableState(model);
  requireTrainable(s, 'setOptimizerState');
  const raw = nativeTraining();
  trainingArgs.int(opt.step, 'step', 0, Number.MAX_SAFE_INTEGER);
  raw.trainSetState(s.native, 'adamM', joinState(s, opt.m, 'optimizer m'));
  raw.trainSetState(s.native, 'adamV', joinState(s, opt.v, 'optimizer v'));
  raw.trainSetStep(s.native, opt.step);
}

/** The learning rate optimizerStep uses at 0-based step `step` (same formula as native/src/train/adamw.cpp). */
export function lrAtStep(c: OptimizerConfig, step: number): number {
  if (c.warmupSteps > 0 && step < c.warmupSteps) return (c.lr * (step + 1)) / c.warmupSteps;
  if (c.totalSteps <= 0) return c.lr;
  const span = c.totalSteps - c.warmupSteps;
  const progress = span > 0 ? Math.min(1, (step - c.warmupSteps) / span) : 1;
  const min = c.lr * c.minLrRatio;
  return min + (c.lr - min) * 0.5 * (1 + Math.cos(Math.PI * progress));
}
