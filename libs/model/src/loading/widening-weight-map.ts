/**
 * The f32 view of a checkpoint whose matrices may be GGML blocks: a WeightMap that widens a quantized tensor the first
 * time it is read (and keeps the result), so training and reward scoring see f32 while the serving engine takes the
 * blocks from the map underneath and nothing is widened for it. Q8_0 is widened here in TypeScript; Q4_0 and the
 * K-quants by the native dequantizer (ggml's dequantize_row_*). Not a quantizer (the engine quantizes in C++).
 */
import { ops, Q8_0_BLOCK_BYTES } from '@flywheel/kernels';
import type { QuantTensor, ServingWeightMap, WeightMap } from '@flywheel/kernels';
import { f16BitsToF32 } from './half-float.codec';

/** (n/32 blocks × 34 bytes) → (n) f32: each block is an f16 scale then 32 signed bytes; value = d * q, exact in f32. */
export function dequantizeQ8_0(bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0; b < n / 32; b++) {
    const d = f16BitsToF32(view.getUint16(b * Q8_0_BLOCK_BYTES, true));
    for (let j = 0; j < 32; j++) out[b * 32 + j] = d * view.getInt8(b * Q8_0_BLOCK_BYTES + 2 + j);
  }
  return out;
}

export class WideningWeightMap implements WeightMap {
  private readonly widened = new Map<string, Float32Array>();
  private all: Map<string, Float32Array> | null = null;

  constructor(private readonly tensors: ServingWeightMap) {}

  get size(): number {
    return this.tensors.size;
  }

  has(name: string): boolean {
    return this.tensors.has(name);
  }

  get(name: string): Float32Array | undefined {
    const t = this.tensors.get(name);
    if (t === undefined || t instanceof Float32Array) return t;
    let w = this.widened.get(name);
    if (w === undefined) {
      w = dequantizeBlocks(t);
      this.widened.set(name, w);
    }
    return w;
  }

  keys(): MapIterator<string> {
    return this.tensors.keys();
  }

  // Iterating values means the caller wants every tensor as f32: widen them all once, in the underlying order.
  entries(): MapIterator<[string, Float32Array]> {
    return this.everything().entries();
  }

  values(): MapIterator<Float32Array> {
    return this.everything().values();
  }

  [Symbol.iterator](): MapIterator<[string, Float32Array]> {
    return this.everything()[Symbol.iterator]();
  }

  forEach(fn: (value: Float32Array, key: string, map: ReadonlyMap<string, Float32Array>) => void, thisArg?: unknown): void {
    this.everything().forEach((v, k) => fn.call(thisArg, v, k, this));
  }

  private everything(): Map<string, Float32Array> {
    if (this.all === null) {
      const all = new Map<string, Float32Array>();
      for (const name of this.tensors.keys()) all.set(name, this.get(name) as Float32Array);
      this.all = all;
    }
    return this.all;
  }
}

/** Any quantized tensor as f32. */
export function dequantizeBlocks(t: QuantTensor): Float32Array {
  if (t.dtype === 'q8_0') return dequantizeQ8_0(t.blocks, (t.blocks.length / Q8_0_BLOCK_BYTES) * 32);
  return ops.dequantize(t.dtype, t.blocks);
}

