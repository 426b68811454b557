/**
 * The training steps over a trainable model, each checked and run off the JS thread: the weighted next-token loss
 * (trainStep), the scalar head (scoreStep), the per-token RL forward and its backward (policyForward /
 * policyBackward), and zeroGrad. They accumulate gradients; the optimizer (training.optimizer.ts) applies them. A
 * frozen model runs the forwards only (trainStep with gradScale 0, scoreStep without dScores, policyForward).
 */
import { trainingArgs } from './argument.checks';
import { checkBatch, requireTrainable, trainableState } from './trainable-model';
import { nativeTraining } from './training.native';
import type { LmTargets, PolicyForwardResult, PolicyPass, PolicyTargets, TrainableModelHandle, TrainBatch } from './training.types';

/**
 * Forward + backward of the weighted next-token loss over `batch`; gradients += gradScale * d loss (accumulate
 * micro-batches by calling it several times with gradScale 1/k, then optimizerStep). gradScale 0 evaluates the
 * loss only (no backward). Runs off the JS thread.
 */
export function trainStep(
  model: TrainableModelHandle,
  batch: TrainBatch,
  lm: LmTargets,
  opts: { gradScale?: number } = {},
): Promise<{ loss: number; weightSum: number }> {
  const s = trainableState(model);
  if (!s.hasLmHead) trainingArgs.fail('this model has no LM head (lm_head.weight) to train');
  const positions = checkBatch(s, batch);
  const n = batch.B * batch.T;
  if (!(lm.targets instanceof Int32Array) || lm.targets.length !== n) trainingArgs.fail(`targets must be an Int32Array of B*T = ${n}`);
  if (!(lm.weights instanceof Float32Array) || lm.weights.length !== n) trainingArgs.fail(`weights must be a Float32Array of B*T = ${n}`);
  for (let i = 0; i < n; i++) {
    if (lm.targets[i] < 0 || lm.targets[i] >= s.spec.vocabSize) trainingArgs.fail(`targets[${i}] = ${lm.targets[i]} is outside the vocabulary`);
    trainingArgs.finite(lm.weights[i], `weights[${i}]`, 0);
  }
  const gradScale = trainingArgs.finite(opts.gradScale ?? 1, 'gradScale');
  if (gradScale !== 0) requireTrainable(s, 'trainStep with a gradient (gradScale 0 evaluates the loss only)');
  return nativeTraining().trainLmStep(s.native, batch.tokens, positions, batch.mask, batch.B, batch.T, lm.targets, lm.weights, gradScale);
}

/**
 * Scalar-head scores (B, numLabels) at each row's last real token (0 for a row without one). With dScores
 * (B, numLabels), also the backward of sum(dScores * scores) into the gradients (reward/value losses: compute
 * the scores first, then pass d loss / d score).
 */
export function scoreStep(model: TrainableModelHandle, batch: TrainBatch, dScores?: Float32Array): Promise<Float32Array> {
  const s = trainableState(model);
  if (s.numLabels <= 0) trainingArgs.fail('this model has no scalar head (create it with numLabels and score.weight)');
  const positions = checkBatch(s, batch);
  if (dScores !== undefined) {
    if (!(dScores instanceof Float32Array) || dScores.length !== batch.B * s.numLabels) {
      trainingArgs.fail(`dScores must be a Float32Array of B*numLabels = ${batch.B * s.numLabels}`);
    }
    for (let i = 0; i < dScores.length; i++) trainingArgs.finite(dScores[i], `dScores[${i}]`);
    requireTrainable(s, 'scoreStep with dScores (a backward)');
  }
  return nativeTraining().trainScoreStep(s.native, batch.tokens, positions, batch.mask, batch.B, batch.T, dScores ?? null);
}

/**
 * Per-token RL forward (PPO, DPO): log-probabilities and entropies of chosen next tokens and, for a critic, values at
 * every slot. Keeps the activations so policyBackward can add d(objective) without a second forward: objectives
 * whose per-token weights depend on these log-probs (PPO ratios, DPO margins) compute them in between.
 */
export async function policyForward(model: TrainableModelHandle, batch: TrainBatch, t: PolicyTargets): Promise<PolicyForwardResult> {
  const s = trainableState(model);
  const positions = checkBatch(s, batch);
  const n = batch.B * batch.T;
  if (!(t.targets instanceof Int32Array) || t.targets.length !== n) trainingArgs.fail(`targets must be an Int32Array of B*T = ${n}`);
  if (!(t.sel instanceof Int32Array) || t.sel.length !== n) trainingArgs.fail(`sel must be an Int32Array of B*T = ${n}`);
  let any = false;
  for (let i = 0; i < n; i++) {
    if (t.targets[i] < 0 || t.targets[i] >= s.spec.vocabSize) trainingArgs.fail(`targets[${i}] = ${t.targets[i]} is outside the vocabulary`);
    if (t.sel[i] !== 0) any = true;
  }
  if (any && !s.hasLmHead) trainingArgs.fail('this model has no LM head to score tokens with');
  if (t.values && s.numLabels !== 1) trainingArgs.fail('values need a scalar head with one label (create the model with numLabels: 1)');
  const r = await nativeTraining().trainPolicyForward(s.native, batch.tokens, positions, batch.mask, batch.B, batch.T, t.targets, t.sel, t.values === true);
  // Fresh arrays of this realm (see splitState).
  const copy = (a: Float32Array) => new Float32Array(a);
  return {
    logp: copy(r.logp),
    entropy: copy(r.entropy),
    values: r.values ? copy(r.values) : undefined,
    pass: { id: r.pass, n } as PolicyPass,
  };
}

/**
 * Adds the gradient of sum(dlogp * logp) + sum(dvalues * values) over the forward named by `pass` (pass d loss /
 * d logp and d loss / d value to descend a loss). Rejects when another step has run on this model since.
 */
export function policyBackward(model: TrainableModelHandle, pass: PolicyPass, d: { dlogp?: Float32Array; dvalues?: Float32Array }): Promise<void> {
  const s = trainableState(model);
  requireTrainable(s, 'policyBackward');
  const check = (a: Float32Array | undefined, name: string) => {
    if (a === undefined) return null;
    if (!(a instanceof Float32Array) || a.length !== pass.n) trainingArgs.fail(`${name} must be a Float32Array of B*T = ${pass.n}`);
    for (let i = 0; i < a.length; i++) trainingArgs.finite(a[i], `${name}[${i}]`);
    return a;
  };
  return nativeTraining().trainPolicyBackward(s.native, pass.id, check(d.dlogp, 'dlogp'), check(d.dvalues, 'dvalues'));
}

/**
 * Turns a LoRA model's adapters off (or back on). Off, every forward (policyForward, scoreStep, trainStep with gradScale
 * 0) is the frozen base's, bit for bit: the reference policy of an RL run without a second copy of the weights. Any
 * step that would write gradients throws until they are on again. Throws for a model without adapters.
 */
export function setLoraEnabled(model: TrainableModelHandle, enabled: boolean): void {
  const s = trainableState(model);
  if (typeof enabled !== 'boolean') trainingArgs.fail('enabled must be a boolean');
  if (s.lora === null) trainingArgs.fail('setLoraEnabled needs a model created with lora options');
  nativeTraining().trainSetLoraEnabled(s.native, enabled);
}

export function zeroGrad(model: TrainableModelHandle): void {
  const s = trainableState(model);
  requireTrainable(s, 'zeroGrad');
  nativeTraining().trainZeroGrad(s.native);
}
