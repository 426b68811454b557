/**
 * Naive reference implementations (plain loops, f64 accumulation) of every native kernel and of a whole Llama
 * forward over one contiguous sequence, for the specs to check the native engine against. Deliberately slow and
 * obvious; not used by the engine. Also a seeded RNG and random-model builder shared by specs and the benchmark.
 */
import type { Llama3RopeScaling, ModelSpec } from './kernels.types';
import { xorshift32 } from './seeded-random';

/** Deterministic uniform generator in [0, 1) (xorshift32, see seeded-random.ts). */
export const makeRng = xorshift32;

export function randomF32(n: number, rng: () => number, scale = 1, offset = 0): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = offset + (rng() * 2 - 1) * scale;
  return a;
}

/** Random weights for every tensor of `shapes` (HF names and shapes), small enough to keep activations tame. */
export function randomWeights(spec: ModelSpec, seed: number, shapes: ReadonlyMap<string, readonly number[]>): Map<string, Float32Array> {
  const rng = makeRng(seed);
  const weights = new Map<string, Float32Array>();
  for (const [name, [rows, cols = 1]] of shapes) {
    if (name.endsWith('layernorm.weight') || name === 'model.norm.weight') {
      weights.set(name, randomF32(rows * cols, rng, 0.1, 1));
    } else if (name.endsWith('.bias')) {
      weights.set(name, randomF32(rows * cols, rng, 0.1));
    } else {
      weights.set(name, randomF32(rows * cols, rng, 1 / Math.sqrt(cols)));
    }
  }
  return weights;
}

export function bf16Round(a: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  const u = new Uint32Array(out.buffer);
  const src = new Uint32Array(a.buffer, a.byteOffset, a.length);
  for (let i = 0; i < a.length; i++) {
    const x = src[i];
    u[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) << 16;
  }
  return out;
}

/** y (T,out) = x (T,in) @ w(out,in)^T + bias */
export function refMatmul(x: Float32Array, w: Float32Array, T: number, n: number, o: number, bias?: Float32Array): Float32Array {
  const y = new Float32Array(T * o);
  for (let t = 0; t < T; t++) {
    for (let r = 0; r < o; r++) {
      let s = bias ? bias[r] : 0;
      for (let k = 0; k < n; k++) s += x[t * n + k] * w[r * n + k];
      y[t * o + r] = s;
    }
  }
  return y;
}

export function refRmsnorm(x: Float32Array, w: Float32Array, T: number, C: number, eps: number): Float32Array {
  const y = new Float32Array(T * C);
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[t * C + c] * x[t * C + c];
    const inv = 1 / Math.sqrt(ss / C + eps);
    for (let c = 0; c < C; c++) y[t * C + c] = w[c] * x[t * C + c] * inv;
  }
  return y;
}

export function refInvFreq(D: number, theta: number, scaling: Llama3RopeScaling | null): number[] {
  const inv: number[] = [];
  for (let j = 0; j < D / 2; j++) {
    // f32 like Hugging Face (and the native kernel): the exponent, inv_freq and the angle are f32 values.
    let f = Math.fround(1 / Math.pow(theta, Math.fround((2 * j) / D)));
    if (scaling) {
      const old = scaling.originalMaxPositionEmbeddings;
      const lowWl = old / scaling.lowFreqFactor;
      const highWl = old / scaling.highFreqFactor;
      const wl = (2 * Math.PI) / f;
      if (wl > lowWl) f = f / scaling.factor;
      else if (wl >= highWl) {
        const smooth = (old / wl - scaling.lowFreqFactor) / (scaling.highFreqFactor - scaling.lowFreqFactor);
        f = ((1 - smooth) * f) / scaling.factor + smooth * f;
      }
    }
    inv.push(Math.fround(f));
  }
  return inv;
}

/** HF rotate_half RoPE of x (T, H*D) with positions (T). */
export function refRope(x: Float32Array, positions: ArrayLike<number>, H: number, D: number, theta: number, scaling: Llama3RopeScaling | null): Float32Array {
  const inv = refInvFreq(D, theta, scaling);
  const y = Float32Array.from(x);
  const half = D / 2;
  for (let t = 0; t < positions.length; t++) {
    for (let h = 0; h < H; h++) {
      const base = t * H * D + h * D;
      for (let j = 0; j < half; j++) {
        const a = Math.fround(positions[t] * inv[j]);
        const c = Math.cos(a);
        const s = Math.sin(a);
        const x1 = x[base + j];
        const x2 = x[base + j + half];
        y[base + j] = x1 * c - x2 * s;
        y[base + j + half] = x2 * c + x1 * s;
      }
    }
  }
  return y;
}

export function refSwiglu(gate: Float32Array, up: Float32Array): Float32Array {
  const y = new Float32Array(gate.length);
  for (let i = 0; i < gate.length; i++) y[i] = (gate[i] / (1 + Math.exp(-gate[i]))) * up[i];
  return y;
}

/**
 * Attention of one query row q (H*D) over keys/values k, v given as (n, KVH*D) contiguous rows (already gathered
 * from the pages), grouped-query, softmax with max subtraction.
 */
export function refAttendOne(q: Float32Array, k: Float32Array, v: Float32Array, n: number, H: number, KVH: number, D: number): Float32Array {
  const out = new Float32Array(H * D);
  const G = H / KVH;
  const scale = 1 / Math.sqrt(D);
  for (let h = 0; h < H; h++) {
    const g = Math.floor(h / G);
    const s = new Float64Array(n);
    let mx = -Infinity;
    for (let p = 0; p < n; p++) {
      let d = 0;
      for (let i = 0; i < D; i++) d += q[h * D + i] * k[p * KVH * D + g * D + i];
      s[p] = d * scale;
      mx = Math.max(mx, s[p]);
    }
    let sum = 0;
    for (let p = 0; p < n; p++) {
      s[p] = Math.exp(s[p] - mx);
      sum += s[p];
    }
    for (let p = 0; p < n; p++) {
      const wgt = s[p] / sum;
      for (let i = 0; i < D; i++) out[h * D + i] += wgt * v[p * KVH * D + g * D + i];
    }
  }
  return out;
}

/** Rows 0..n-1 of a sequence gathered from a paged pool (numBlocks, blockSize, KVH*D). */
export function gatherPages(pool: Float32Array, table: ArrayLike<number>, n: number, blockSize: number, width: number): Float32Array {
  const out = new Float32Array(n * width);
  for (let p = 0; p < n; p++) {
    const slot = table[Math.floor(p / blockSize)] * blockSize + (p % blockSize);
    out.set(pool.subarray(slot * width, (slot + 1) * width), p * width);
  }
  return out;
}

/** Whole-model logits (T, V) for one sequence's tokens at positions 0..T-1, all in f32/f64 plain loops. */
export function refModelLogits(spec: ModelSpec, w: ReadonlyMap<string, Float32Array>, tokens: number[]): Float32Array {
  const get = (name: string): Float32Array => {
    const t = w.get(name);
    if (!t) throw new Error(`reference: missing ${name}`);
    return t;
  };
  const T = tokens.length;
  const C = spec.hiddenSize;
  const H = spec.numHeads;
  const KVH = spec.numKvHeads;
  const D = spec.headDim;
  const I = spec.intermediateSize;
  const emb = get('model.embed_tokens.weight');
  let x = new Float32Array(T * C);
  tokens.forEach((tok, t) => x.set(emb.subarray(tok * C, (tok + 1) * C), t * C));
  const positions = tokens.map((_, i) => i);
  for (let l = 0; l < spec.numLayers; l++) {
    const p = `model.layers.${l}.`;
    const h = refRmsnorm(x, get(`${p}input_layernorm.weight`), T, C, spec.rmsNormEps);
    const bias = (n: string): Float32Array | undefined => (spec.attentionBias ? get(`${p}self_attn.${n}_proj.bias`) : undefined);
    let q = refMatmul(h, get(`${p}self_attn.q_proj.weight`), T, C, H * D, bias('q'));
    let k = refMatmul(h, get(`${p}self_attn.k_proj.weight`), T, C, KVH * D, bias('k'));
    const v = refMatmul(h, get(`${p}self_attn.v_proj.weight`), T, C, KVH * D, bias('v'));
    q = refRope(q, positions, H, D, spec.ropeTheta, spec.ropeScaling);
    k = refRope(k, positions, KVH, D, spec.ropeTheta, spec.ropeScaling);
    const att = new Float32Array(T * H * D);
    for (let t = 0; t < T; t++) att.set(refAttendOne(q.subarray(t * H * D, (t + 1) * H * D), k, v, t + 1, H, KVH, D), t * H * D);
    const o = refMatmul(att, get(`${p}self_attn.o_proj.weight`), T, H * D, C);
    x = x.map((val, i) => val + o[i]);
    const h2 = refRmsnorm(x, get(`${p}post_attention_layernorm.weight`), T, C, spec.rmsNormEps);
    const g = refMatmul(h2, get(`${p}mlp.gate_proj.weight`), T, C, I);
    const u = refMatmul(h2, get(`${p}mlp.up_proj.weight`), T, C, I);
    const d = refMatmul(refSwiglu(g, u), get(`${p}mlp.down_proj.weight`), T, I, C);
    x = x.map((val, i) => val + d[i]);
  }
  const xf = refRmsnorm(x, get('model.norm.weight'), T, C, spec.rmsNormEps);
  const head = spec.tieWordEmbeddings ? emb : get('lm_head.weight');
  return refMatmul(xf, head, T, C, spec.vocabSize);
}

/** max |a - b| / (max |b| + tiny): a scale-aware relative error for whole tensors. */
export function relError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let diff = 0;
  let mag = 1e-30;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    mag = Math.max(mag, Math.abs(b[i]));
  }
  return diff / mag;
}
