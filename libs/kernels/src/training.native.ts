/**
 * The raw training exports of the addon (native/src/binding/training.cpp), exactly as it defines them, and the
 * accessor the checked training API calls them through. Arguments are NOT validated here; only the training.*.ts
 * files and trainable-model.ts call this.
 */
import { loadNative, NativeExternal } from './native.loader';
import type { OptimizerConfig } from './training.types';

/** Raw training exports of the addon (binding/training.cpp); unchecked. */
export interface NativeTraining {
  trainModelCreate(
    spec: object,
    names: string[],
    tensors: Float32Array[],
    numLabels: number,
    threads: number,
    lora: { rank: number; alpha: number; targets: string[] } | null,
    forwardOnly: boolean,
  ): NativeExternal;
  trainModelFree(h: NativeExternal): void;
  trainModelLayout(h: NativeExternal): {
    names: string[];
    rows: number[];
    cols: number[];
    offsets: number[];
    frozen: boolean[];
    numParams: number;
    numFrozen: number;
    loraRank: number;
    loraScale: number;
    step: number;
    threads: number;
    forwardOnly: boolean;
    /** Bytes held (capacity): trainable weights, frozen base, gradients, both AdamW moments, kept activations. */
    bytes: { params: number; frozen: number; grads: number; moments: number; activations: number };
  };
  trainGetState(h: NativeExternal, which: StateBuffer | 'frozen'): Float32Array;
  trainMergedWeights(h: NativeExternal): Float32Array;
  trainSetState(h: NativeExternal, which: StateBuffer, data: Float32Array): void;
  trainSetStep(h: NativeExternal, step: number): void;
  trainZeroGrad(h: NativeExternal): void;
  trainSetLoraEnabled(h: NativeExternal, enabled: boolean): void;
  trainLmStep(
    h: NativeExternal,
    tokens: Int32Array,
    positions: Int32Array,
    mask: Int32Array,
    B: number,
    T: number,
    targets: Int32Array,
    weights: Float32Array,
    gradScale: number,
  ): Promise<{ loss: number; weightSum: number }>;
  trainScoreStep(
    h: NativeExternal,
    tokens: Int32Array,
    positions: Int32Array,
    mask: Int32Array,
    B: number,
    T: number,
    dScores: Float32Array | null,
  ): Promise<Float32Array>;
  trainPolicyForward(
    h: NativeExternal,
    tokens: Int32Array,
    positions: Int32Array,
    mask: Int32Array,
    B: number,
    T: number,
    targets: Int32Array,
    sel: Int32Array,
    values: boolean,
  ): Promise<{ logp: Float32Array; entropy: Float32Array; values?: Float32Array; pass: number }>;
  trainPolicyBackward(h: NativeExternal, pass: number, dlogp: Float32Array | null, dvalues: Float32Array | null): Promise<void>;
  trainOptimizerStep(h: NativeExternal, config: OptimizerConfig): Promise<{ gradNorm: number; lr: number; step: number }>;
  opTrainLora(x: Float32Array, a: Float32Array, b: Float32Array, dy: Float32Array, scale: number, N: number, n: number, o: number, r: number): { y: Float32Array; dx: Float32Array; da: Float32Array; db: Float32Array };
  opTrainMatmulBackward(dy: Float32Array, x: Float32Array, w: Float32Array, N: number, n: number, o: number, reference: boolean): { dx: Float32Array; dw: Float32Array; db: Float32Array };
  opTrainRmsnormBackward(dy: Float32Array, x: Float32Array, w: Float32Array, N: number, C: number, eps: number): { y: Float32Array; dx: Float32Array; dw: Float32Array };
  opTrainRopeBackward(dy: Float32Array, positions: Int32Array, invFreq: Float32Array, N: number, H: number, D: number): Float32Array;
  opTrainAttention(q: Float32Array, k: Float32Array, v: Float32Array, mask: Int32Array, dout: Float32Array, B: number, T: number, H: number, KVH: number, D: number): { out: Float32Array; dq: Float32Array; dk: Float32Array; dv: Float32Array };
  opTrainSwigluBackward(dy: Float32Array, gate: Float32Array, up: Float32Array): { y: Float32Array; dgate: Float32Array; dup: Float32Array };
  opTrainCrossEntropy(logits: Float32Array, targets: Int32Array, weights: Float32Array, M: number, V: number): { loss: number; dlogits: Float32Array };
  opTrainEmbeddingBackward(dy: Float32Array, tokens: Int32Array, V: number, C: number): Float32Array;
}

export type StateBuffer = 'params' | 'grads' | 'adamM' | 'adamV';

export function nativeTraining(): NativeTraining {
  // The addon object carries these exports beside the serving ones (addon.cpp calls register_training_exports).
  return loadNative() as unknown as NativeTraining;
}
