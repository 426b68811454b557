/**
 * Naive float64 references of every training op, forward and backward, in the same shapes and conventions as
 * native/src/train (row-major, HF layouts, padded causal GQA attention, weighted cross-entropy). Plain loops for
 * the specs: each backward is checked against central differences of its forward, and they document the math
 * the native kernels implement. Not used by training itself.
 */

import type { ModelSpec } from './kernels.types';

export type F64 = Float64Array;

/** y (N,out) = x (N,in) @ w(out,in)^T + b */
export function matmulForward(x: F64, w: F64, b: F64 | null, N: number, n: number, o: number): F64 {
  const y = new Float64Array(N * o);
  for (let t = 0; t < N; t++)
    for (let r = 0; r < o; r++) {
      let s = b ? b[r] : 0;
      for (let k = 0; k < n; k++) s += x[t * n + k] * w[r * n + k];
      y[t * o + r] = s;
    }
  return y;
}

export function matmulBackward(dy: F64, x: F64, w: F64, N: number, n: number, o: number): { dx: F64; dw: F64; db: F64 } {
  const dx = new Float64Array(N * n);
  const dw = new Float64Array(o * n);
  const db = new Float64Array(o);
  for (let t = 0; t < N; t++)
    for (let r = 0; r < o; r++) {
      const g = dy[t * o + r];
      db[r] += g;
      for (let k = 0; k < n; k++) {
        dx[t * n + k] += g * w[r * n + k];
        dw[r * n + k] += g * x[t * n + k];
      }
    }
  return { dx, dw, db };
}

/** LoRA term y (N,out) = scale * (x (N,in) @ a(r,in)^T) @ b(out,r)^T, written out with plain loops. */
export function loraForward(x: F64, a: F64, b: F64, scale: number, N: number, n: number, o: number, r: number): F64 {
  const y = new Float64Array(N * o);
  for (let t = 0; t < N; t++)
    for (let k = 0; k < r; k++) {
      let xa = 0;
      for (let i = 0; i < n; i++) xa += x[t * n + i] * a[k * n + i];
      for (let j = 0; j < o; j++) y[t * o + j] += scale * xa * b[j * r + k];
    }
  return y;
}

/** dx = scale (dy b) a, da = scale (dy b)^T x, db = scale dy^T (x a^T). */
export function loraBackward(dy: F64, x: F64, a: F64, b: F64, scale: number, N: number, n: number, o: number, r: number): { dx: F64; da: F64; db: F64 } {
  const dx = new Float64Array(N * n);
  const da = new Float64Array(r * n);
  const db = new Float64Array(o * r);
  for (let t = 0; t < N; t++)
    for (let k = 0; k < r; k++) {
      let xa = 0;
      let dyb = 0;
      for (let i = 0; i < n; i++) xa += x[t * n + i] * a[k * n + i];
      for (let j = 0; j < o; j++) {
        dyb += dy[t * o + j] * b[j * r + k];
        db[j * r + k] += scale * dy[t * o + j] * xa;
      }
      for (let i = 0; i < n; i++) {
        dx[t * n + i] += scale * dyb * a[k * n + i];
        da[k * n + i] += scale * dyb * x[t * n + i];
      }
    }
  return { dx, da, db };
}

export function rmsnormForward(x: F64, w: F64, N: number, C: number, eps: number): F64 {
  const y = new Float64Array(N * C);
  for (let t = 0; t < N; t++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[t * C + c] ** 2;
    const r = 1 / Math.sqrt(ss / C + eps);
    for (let c = 0; c < C; c++) y[t * C + c] = w[c] * x[t * C + c] * r;
  }
  return y;
}

export function rmsnormBackward(dy: F64, x: F64, w: F64, N: number, C: number, eps: number): { dx: F64; dw: F64 } {
  const dx = new Float64Array(N * C);
  const dw = new Float64Array(C);
  for (let t = 0; t < N; t++) {
    let ss = 0;
    for (let c = 0; c < C; c++) ss += x[t * C + c] ** 2;
    const r = 1 / Math.sqrt(ss / C + eps);
    let dot = 0;
    for (let c = 0; c < C; c++) dot += dy[t * C + c] * w[c] * x[t * C + c] * r;
    for (let c = 0; c < C; c++) {
      const xh = x[t * C + c] * r;
      dw[c] += dy[t * C + c] * xh;
      dx[t * C + c] = r * (dy[t * C + c] * w[c] - (xh * dot) / C);
    }
  }
  return { dx, dw };
}

/** HF rotate_half RoPE of every head of x (N, H*D) by angle positions[n] * invFreq[j]. */
export function ropeForward(x: F64, positions: ArrayLike<number>, invFreq: ArrayLike<number>, N: number, H: number, D: number, inverse = false): F64 {
  const y = Float64Array.from(x);
  const half = D / 2;
  for (let t = 0; t < N; t++)
    for (let h = 0; h < H; h++)
      for (let j = 0; j < half; j++) {
        const ang = positions[t] * invFreq[j] * (inverse ? -1 : 1);
        const c = Math.cos(ang);
        const s = Math.sin(ang);
        const i = t * H * D + h * D + j;
        const a = x[i];
        const b = x[i + half];
        y[i] = a * c - b * s;
        y[i + half] = b * c + a * s;
      }
  return y;
}

/** The rotation is orthogonal: the backward is the rotation by the opposite angle. */
export function ropeBackward(dy: F64, positions: ArrayLike<number>, invFreq: ArrayLike<number>, N: number, H: number, D: number): F64 {
  return ropeForward(dy, positions, invFreq, N, H, D, true);
}

export interface AttnShape {
  B: number;
  T: number;
  H: number;
  KVH: number;
  D: number;
}

/** Causal padded GQA attention: q (B*T,H*D), k/v (B*T,KVH*D), mask (B*T). A query with no visible key outputs 0. */
export function attentionForward(q: F64, k: F64, v: F64, mask: ArrayLike<number>, s: AttnShape): { out: F64; probs: F64 } {
  const { B, T, H, KVH, D } = s;
  const out = new Float64Array(B * T * H * D);
  const probs = new Float64Array(B * H * T * T);
  const scale = 1 / Math.sqrt(D);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / (H / KVH));
      for (let t = 0; t < T; t++) {
        const sc: number[] = [];
        let mx = -Infinity;
        for (let j = 0; j <= t; j++) {
          if (!mask[b * T + j]) continue;
          let d = 0;
          for (let i = 0; i < D; i++) d += q[(b * T + t) * H * D + h * D + i] * k[(b * T + j) * KVH * D + kh * D + i];
          sc[j] = d * scale;
          mx = Math.max(mx, sc[j]);
        }
        if (mx === -Infinity) continue;
        let sum = 0;
        for (let j = 0; j <= t; j++) if (mask[b * T + j]) sum += Math.exp(sc[j] - mx);
        for (let j = 0; j <= t; j++) {
          if (!mask[b * T + j]) continue;
          const p = Math.exp(sc[j] - mx) / sum;
          probs[((b * H + h) * T + t) * T + j] = p;
          for (let i = 0; i < D; i++) out[(b * T + t) * H * D + h * D + i] += p * v[(b * T + j) * KVH * D + kh * D + i];
        }
      }
    }
  return { out, probs };
}

export function attentionBackward(dout: F64, probs: F64, q: F64, k: F64, v: F64, s: AttnShape): { dq: F64; dk: F64; dv: F64 } {
  const { B, T, H, KVH, D } = s;
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  const dv = new Float64Array(v.length);
  const scale = 1 / Math.sqrt(D);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / (H / KVH));
      for (let t = 0; t < T; t++) {
        const qi = (b * T + t) * H * D + h * D;
        const dp = new Float64Array(T);
        let rowsum = 0;
        for (let j = 0; j <= t; j++) {
          const p = probs[((b * H + h) * T + t) * T + j];
          const vj = (b * T + j) * KVH * D + kh * D;
          for (let i = 0; i < D; i++) {
            dp[j] += dout[qi + i] * v[vj + i];
            dv[vj + i] += p * dout[qi + i];
          }
          rowsum += p * dp[j];
        }
        for (let j = 0; j <= t; j++) {
          const p = probs[((b * H + h) * T + t) * T + j];
          const ds = p * (dp[j] - rowsum) * scale;
          const kj = (b * T + j) * KVH * D + kh * D;
          for (let i = 0; i < D; i++) {
            dq[qi + i] += ds * k[kj + i];
            dk[kj + i] += ds * q[qi + i];
          }
        }
      }
    }
  return { dq, dk, dv };
}

export function swigluForward(g: F64, u: F64): F64 {
  return g.map((x, i) => (x / (1 + Math.exp(-x))) * u[i]);
}

export function swigluBackward(dy: F64, g: F64, u: F64): { dg: F64; du: F64 } {
  const dg = new Float64Array(g.length);
  const du = new Float64Array(g.length);
  for (let i = 0; i < g.length; i++) {
    const sig = 1 / (1 + Math.exp(-g[i]));
    du[i] = dy[i] * g[i] * sig;
    dg[i] = dy[i] * u[i] * sig * (1 + g[i] * (1 - sig));
  }
  return { dg, du };
}

/** sum_m w[m] * -log softmax(z[m])[target[m]] and its gradient w.r.t. z (M, V). */
export function crossEntropy(z: F64, targets: ArrayLike<number>, w: ArrayLike<number>, M: number, V: number): { loss: number; dz: F64 } {
  const dz = new Float64Array(M * V);
  let loss = 0;
  for (let m = 0; m < M; m++) {
    let mx = -Infinity;
    for (let i = 0; i < V; i++) mx = Math.max(mx, z[m * V + i]);
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(z[m * V + i] - mx);
    const lse = mx + Math.log(sum);
    loss += w[m] * (lse - z[m * V + targets[m]]);
    for (let i = 0; i < V; i++) dz[m * V + i] = w[m] * Math.exp(z[m * V + i] - lse);
    dz[m * V + targets[m]] -= w[m];
  }
  return { loss, dz };
}

export function embeddingForward(table: F64, tokens: ArrayLike<number>, C: number): F64 {
  const y = new Float64Array(tokens.length * C);
  for (let n = 0; n < tokens.length; n++) for (let c = 0; c < C; c++) y[n * C + c] = table[tokens[n] * C + c];
  return y;
}

export function embeddingBackward(dy: F64, tokens: ArrayLike<number>, V: number, C: number): F64 {
  const d = new Float64Array(V * C);
  for (let n = 0; n < tokens.length; n++) for (let c = 0; c < C; c++) d[tokens[n] * C + c] += dy[n * C + c];
  return d;
}

/** Scalar head at each row's last real token: scores (B, L) = xf[last] @ w(L, C)^T; rows without a real token score 0. */
export function lastTokenRows(mask: ArrayLike<number>, B: number, T: number): number[] {
  const last: number[] = [];
  for (let b = 0; b < B; b++) {
    let l = -1;
    for (let t = 0; t < T; t++) if (mask[b * T + t]) l = b * T + t;
    last.push(l);
  }
  return last;
}

/** Central differences of a scalar function f at x along every coordinate (x restored afterwards). */
export function numericGrad(f: () => number, x: F64, h = 1e-5): F64 {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const x0 = x[i];
    x[i] = x0 + h;
    const fp = f();
    x[i] = x0 - h;
    const fm = f();
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** The tiny GQA model (untied head, q/k/v bias) the training specs check gradients on. */
export const TINY_TRAIN_SPEC: ModelSpec = {
  vocabSize: 23,
  hiddenSize: 16,
  intermediateSize: 24,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 6,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  ropeScaling: null,
  tieWordEmbeddings: false,
  attentionBias: true,
  maxPositionEmbeddings: 64,
};
