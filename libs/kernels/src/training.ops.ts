/**
 * The native training kernels one at a time (`trainingOps`: LoRA, matmul, RMSNorm, RoPE, attention, SwiGLU,
 * cross-entropy and embedding backwards), synchronous and checked, for the specs against training.reference.ts.
 * Not used by training itself (trainable-model.ts and training.steps.ts run whole models).
 */
import { trainingArgs } from './argument.checks';
import { nativeTraining } from './training.native';

function f32(value: unknown, name: string, length: number): Float32Array {
  if (!(value instanceof Float32Array) || value.length !== length) trainingArgs.fail(`${name} must be a Float32Array of ${length}`);
  return value;
}

function i32(value: unknown, name: string, length: number, max: number): Int32Array {
  if (!(value instanceof Int32Array) || value.length !== length) trainingArgs.fail(`${name} must be an Int32Array of ${length}`);
  for (let i = 0; i < length; i++) if (value[i] < 0 || value[i] > max) trainingArgs.fail(`${name}[${i}] = ${value[i]} is outside [0, ${max}]`);
  return value;
}

/** The native training kernels one by one (synchronous, small shapes), for the specs. */
export const trainingOps = {
  /** LoRA term y = scale * (x a^T) b^T alone and its backward: dx (N,in), da (r,in), db (out,r). */
  lora(x: Float32Array, a: Float32Array, b: Float32Array, dy: Float32Array, scale: number, dims: { N: number; in: number; out: number; r: number }) {
    const N = trainingArgs.int(dims.N, 'N', 1), n = trainingArgs.int(dims.in, 'in', 1), o = trainingArgs.int(dims.out, 'out', 1), r = trainingArgs.int(dims.r, 'r', 1);
    return nativeTraining().opTrainLora(f32(x, 'x', N * n), f32(a, 'a', r * n), f32(b, 'b', o * r), f32(dy, 'dy', N * o), trainingArgs.finite(scale, 'scale'), N, n, o, r);
  },
  /** y = x @ w^T + b backward: dx (N,in), dw (out,in), db (out); `reference` picks the plain-loop kernel. */
  matmulBackward(dy: Float32Array, x: Float32Array, w: Float32Array, dims: { N: number; in: number; out: number }, reference = false) {
    const N = trainingArgs.int(dims.N, 'N', 1), n = trainingArgs.int(dims.in, 'in', 1), o = trainingArgs.int(dims.out, 'out', 1);
    return nativeTraining().opTrainMatmulBackward(f32(dy, 'dy', N * o), f32(x, 'x', N * n), f32(w, 'w', o * n), N, n, o, reference);
  },
  rmsnormBackward(dy: Float32Array, x: Float32Array, w: Float32Array, N: number, C: number, eps: number) {
    trainingArgs.int(N, 'N', 1);
    trainingArgs.int(C, 'C', 1);
    return nativeTraining().opTrainRmsnormBackward(f32(dy, 'dy', N * C), f32(x, 'x', N * C), f32(w, 'w', C), N, C, trainingArgs.finite(eps, 'eps', 0));
  },
  ropeBackward(dy: Float32Array, positions: Int32Array, invFreq: Float32Array, H: number, D: number): Float32Array {
    const N = positions.length;
    trainingArgs.int(H, 'H', 1);
    if (!Number.isInteger(D) || D < 2 || D % 2 !== 0) trainingArgs.fail('D must be even');
    return nativeTraining().opTrainRopeBackward(f32(dy, 'dy', N * H * D), i32(positions, 'positions', N, 2 ** 30), f32(invFreq, 'invFreq', D / 2), N, H, D);
  },
  attention(q: Float32Array, k: Float32Array, v: Float32Array, mask: Int32Array, dout: Float32Array, s: { B: number; T: number; H: number; KVH: number; D: number }) {
    const B = trainingArgs.int(s.B, 'B', 1), T = trainingArgs.int(s.T, 'T', 1), H = trainingArgs.int(s.H, 'H', 1), KVH = trainingArgs.int(s.KVH, 'KVH', 1, H), D = trainingArgs.int(s.D, 'D', 1);
    if (H % KVH !== 0) trainingArgs.fail('KVH must divide H');
    const n = B * T;
    return nativeTraining().opTrainAttention(f32(q, 'q', n * H * D), f32(k, 'k', n * KVH * D), f32(v, 'v', n * KVH * D), i32(mask, 'mask', n, 1), f32(dout, 'dout', n * H * D), B, T, H, KVH, D);
  },
  swigluBackward(dy: Float32Array, gate: Float32Array, up: Float32Array) {
    const n = dy.length;
    return nativeTraining().opTrainSwigluBackward(f32(dy, 'dy', n), f32(gate, 'gate', n), f32(up, 'up', n));
  },
  crossEntropy(logits: Float32Array, targets: Int32Array, weights: Float32Array, M: number, V: number) {
    trainingArgs.int(M, 'M', 1);
    trainingArgs.int(V, 'V', 1);
    return nativeTraining().opTrainCrossEntropy(f32(logits, 'logits', M * V), i32(targets, 'targets', M, V - 1), f32(weights, 'weights', M), M, V);
  },
  embeddingBackward(dy: Float32Array, tokens: Int32Array, V: number, C: number): Float32Array {
    trainingArgs.int(V, 'V', 1);
    trainingArgs.int(C, 'C', 1);
    return nativeTraining().opTrainEmbeddingBackward(f32(dy, 'dy', tokens.length * C), i32(tokens, 'tokens', tokens.length, V - 1), V, C);
  },
};
