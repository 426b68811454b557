/**
 * A naive Llama-family forward over a paged KV cache in plain TypeScript (float64 math, f32 weights and KV),
 * honouring the StepBatch contract exactly. It is the engine's test runner and an independent reference for
 * the native kernels; it is not fast and never serves traffic.
 */
import type { ModelSpec } from '@flywheel/kernels';
import type { StepBatch, StepRunner } from './engine.types';

/** The hyperparameters this forward reads: a subset of the kernels' ModelSpec. */
export type LlamaSpec = Omit<ModelSpec, 'maxPositionEmbeddings'>;

// Module-level aliases: inside Jest's vm context every global lookup (Math.*) in a hot loop is several times slower.
const { exp, floor, sqrt, cos, sin, pow } = Math;

interface LayerWeights {
  inputNorm: Float32Array; // (H)
  q: Float32Array; // (nH*hd, H)
  k: Float32Array; // (nKv*hd, H)
  v: Float32Array; // (nKv*hd, H)
  qBias: Float32Array | null; // (nH*hd)
  kBias: Float32Array | null; // (nKv*hd)
  vBias: Float32Array | null; // (nKv*hd)
  o: Float32Array; // (H, nH*hd)
  postNorm: Float32Array; // (H)
  gate: Float32Array; // (I, H)
  up: Float32Array; // (I, H)
  down: Float32Array; // (H, I)
}

export class ReferenceRunner implements StepRunner {
  readonly vocabSize: number;
  private readonly embed: Float32Array; // (V, H)
  private readonly lmHead: Float32Array; // (V, H)
  private readonly finalNorm: Float32Array; // (H)
  private readonly layers: LayerWeights[] = [];
  private readonly invFreq: Float64Array; // (hd/2)
  /** Per layer K and V pools of (numBlocks, blockSize, nKv, hd). */
  private readonly kCache: Float32Array[] = [];
  private readonly vCache: Float32Array[] = [];
  private readonly kvWidth: number;

  constructor(
    private readonly spec: LlamaSpec,
    weights: ReadonlyMap<string, Float32Array>,
    private readonly numBlocks: number,
    private readonly blockSize: number,
  ) {
    // The Llama forward only: a spec that needs more would be computed wrong, silently.
    const EXTRAS = ['qkNorm', 'rotaryDim', 'noRopeLayers', 'longRope', 'hiddenAct', 'embedScale', 'attnScale', 'attnSoftcap', 'finalSoftcap', 'sandwichNorms', 'normWeightOffset', 'slidingWindow', 'slidingLayers', 'ropeLocalTheta', 'ropeLinearFactor'] as const;
    const plain = (k: (typeof EXTRAS)[number]): boolean =>
      spec[k] === undefined || spec[k] === false || (k === 'rotaryDim' && spec.rotaryDim === spec.headDim) || (k === 'hiddenAct' && spec.hiddenAct === 'silu');
    const extras = EXTRAS.filter((k) => !plain(k));
    if (extras.length > 0) throw new Error(`ReferenceRunner implements the Llama forward only; this spec also needs ${extras.join(', ')}`);
    const { hiddenSize: H, intermediateSize: I, numHeads: nH, numKvHeads: nKv, headDim: hd, vocabSize: V } = spec;
    const get = (name: string, size: number): Float32Array => {
      const w = weights.get(name);
      if (!w) throw new Error(`missing weight ${name}`);
      if (w.length !== size) throw new Error(`weight ${name} has ${w.length} values, expected ${size}`);
      return w;
    };
    this.vocabSize = V;
    this.embed = get('model.embed_tokens.weight', V * H);
    this.lmHead = spec.tieWordEmbeddings ? this.embed : get('lm_head.weight', V * H);
    this.finalNorm = get('model.norm.weight', H);
    for (let l = 0; l < spec.numLayers; l++) {
      const p = `model.layers.${l}.`;
      this.layers.push({
        inputNorm: get(`${p}input_layernorm.weight`, H),
        q: get(`${p}self_attn.q_proj.weight`, nH * hd * H),
        k: get(`${p}self_attn.k_proj.weight`, nKv * hd * H),
        v: get(`${p}self_attn.v_proj.weight`, nKv * hd * H),
        qBias: spec.attentionBias ? get(`${p}self_attn.q_proj.bias`, nH * hd) : null,
        kBias: spec.attentionBias ? get(`${p}self_attn.k_proj.bias`, nKv * hd) : null,
        vBias: spec.attentionBias ? get(`${p}self_attn.v_proj.bias`, nKv * hd) : null,
        o: get(`${p}self_attn.o_proj.weight`, H * nH * hd),
        postNorm: get(`${p}post_attention_layernorm.weight`, H),
        gate: get(`${p}mlp.gate_proj.weight`, I * H),
        up: get(`${p}mlp.up_proj.weight`, I * H),
        down: get(`${p}mlp.down_proj.weight`, H * I),
      });
    }
    this.invFreq = ropeInverseFrequencies(spec);
    this.kvWidth = nKv * hd;
    for (let l = 0; l < spec.numLayers; l++) {
      this.kCache.push(new Float32Array(numBlocks * blockSize * this.kvWidth));
      this.vCache.push(new Float32Array(numBlocks * blockSize * this.kvWidth));
    }
  }

  async copyBlocks(src: readonly number[], dst: readonly number[]): Promise<void> {
    const stride = this.blockSize * this.kvWidth;
    for (let l = 0; l < this.spec.numLayers; l++) {
      for (let i = 0; i < src.length; i++) {
        const s = src[i]! * stride;
        const d = dst[i]! * stride;
        this.kCache[l]!.copyWithin(d, s, s + stride);
        this.vCache[l]!.copyWithin(d, s, s + stride);
      }
    }
  }

  async run(batch: StepBatch): Promise<Float32Array> {
    return this.forward(batch);
  }

  /** Synchronous forward: (L, V) logits for batch.logitRows. */
  forward(batch: StepBatch): Float32Array {
    const { hiddenSize: H, intermediateSize: I, numHeads: nH, numKvHeads: nKv, headDim: hd, vocabSize: V } = this.spec;
    const T = batch.tokens.length;
    const qW = nH * hd;
    const kvW = nKv * hd;
    const group = nH / nKv;
    const x = new Float64Array(T * H); // (T, H) residual stream
    for (let t = 0; t < T; t++) {
      const id = batch.tokens[t]!;
      if (id < 0 || id >= V) throw new RangeError(`token id ${id} out of vocab`);
      for (let i = 0; i < H; i++) x[t * H + i] = this.embed[id * H + i]!;
    }
    const slots = new Int32Array(T); // (T) cache row of each token
    for (let t = 0; t < T; t++) {
      const pos = batch.positions[t]!;
      const block = batch.blockTables[batch.seqIndex[t]! * batch.maxBlocksPerSeq + floor(pos / this.blockSize)]!;
      if (block < 0 || block >= this.numBlocks) throw new RangeError(`token ${t} at position ${pos} has no block`);
      slots[t] = block * this.blockSize + (pos % this.blockSize);
    }
    const h = new Float64Array(H);
    const q = new Float64Array(T * qW); // (T, nH*hd)
    const k = new Float64Array(kvW);
    const v = new Float64Array(kvW);
    const attn = new Float64Array(qW);
    const gate = new Float64Array(I);
    const up = new Float64Array(I);
    const out = new Float64Array(H);
    const scale = 1 / sqrt(hd);

    for (let l = 0; l < this.spec.numLayers; l++) {
      const w = this.layers[l]!;
      const kc = this.kCache[l]!;
      const vc = this.vCache[l]!;
      // Projections for every token, and K/V written to their slots before any attention reads them.
      for (let t = 0; t < T; t++) {
        rmsNorm(x, t * H, w.inputNorm, this.spec.rmsNormEps, h);
        const qt = q.subarray(t * qW, (t + 1) * qW);
        matVec(w.q, h, qt, w.qBias);
        matVec(w.k, h, k, w.kBias);
        matVec(w.v, h, v, w.vBias);
        const pos = batch.positions[t]!;
        for (let head = 0; head < nH; head++) this.rope(qt, head * hd, pos);
        for (let head = 0; head < nKv; head++) this.rope(k, head * hd, pos);
        const row = slots[t]! * kvW;
        for (let i = 0; i < kvW; i++) {
          kc[row + i] = k[i]!;
          vc[row + i] = v[i]!;
        }
      }
      for (let t = 0; t < T; t++) {
        const pos = batch.positions[t]!;
        const table = batch.seqIndex[t]! * batch.maxBlocksPerSeq;
        const scores = new Float64Array(pos + 1);
        attn.fill(0);
        for (let head = 0; head < nH; head++) {
          const qOff = t * qW + head * hd;
          const kvOff = floor(head / group) * hd;
          let m = -Infinity;
          for (let p = 0; p <= pos; p++) {
            const row = (batch.blockTables[table + floor(p / this.blockSize)]! * this.blockSize + (p % this.blockSize)) * kvW + kvOff;
            let s = 0;
            for (let i = 0; i < hd; i++) s += q[qOff + i]! * kc[row + i]!;
            scores[p] = s * scale;
            if (scores[p]! > m) m = scores[p]!;
          }
          let z = 0;
          for (let p = 0; p <= pos; p++) z += scores[p] = exp(scores[p]! - m);
          for (let p = 0; p <= pos; p++) {
            const row = (batch.blockTables[table + floor(p / this.blockSize)]! * this.blockSize + (p % this.blockSize)) * kvW + kvOff;
            const a = scores[p]! / z;
            for (let i = 0; i < hd; i++) attn[head * hd + i]! += a * vc[row + i]!;
          }
        }
        matVec(w.o, attn, out, null);
        for (let i = 0; i < H; i++) x[t * H + i]! += out[i]!;
        rmsNorm(x, t * H, w.postNorm, this.spec.rmsNormEps, h);
        matVec(w.gate, h, gate, null);
        matVec(w.up, h, up, null);
        for (let i = 0; i < I; i++) gate[i] = (gate[i]! / (1 + exp(-gate[i]!))) * up[i]!;
        matVec(w.down, gate, out, null);
        for (let i = 0; i < H; i++) x[t * H + i]! += out[i]!;
      }
    }
    const L = batch.logitRows.length;
    const logits = new Float32Array(L * V); // (L, V)
    const row = new Float64Array(V);
    for (let r = 0; r < L; r++) {
      rmsNorm(x, batch.logitRows[r]! * H, this.finalNorm, this.spec.rmsNormEps, h);
      matVec(this.lmHead, h, row, null);
      logits.set(row, r * V);
    }
    return logits;
  }

  /** HF rotate_half RoPE on one head vector at vec[off .. off+hd): pairs (j, j + hd/2). */
  private rope(vec: Float64Array, off: number, pos: number): void {
    const half = this.spec.headDim / 2;
    for (let j = 0; j < half; j++) {
      const angle = pos * this.invFreq[j]!;
      const c = cos(angle);
      const s = sin(angle);
      const a = vec[off + j]!;
      const b = vec[off + j + half]!;
      vec[off + j] = a * c - b * s;
      vec[off + j + half] = b * c + a * s;
    }
  }
}

function ropeInverseFrequencies(spec: LlamaSpec): Float64Array {
  const half = spec.headDim / 2;
  const inv = new Float64Array(half);
  for (let j = 0; j < half; j++) inv[j] = 1 / pow(spec.ropeTheta, (2 * j) / spec.headDim);
  const sc = spec.ropeScaling;
  if (!sc) return inv;
  // Llama 3 frequency scaling, as transformers' _compute_llama3_parameters.
  const lowWavelen = sc.originalMaxPositionEmbeddings / sc.lowFreqFactor;
  const highWavelen = sc.originalMaxPositionEmbeddings / sc.highFreqFactor;
  for (let j = 0; j < half; j++) {
    const freq = inv[j]!;
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) continue;
    if (wavelen > lowWavelen) {
      inv[j] = freq / sc.factor;
      continue;
    }
    const smooth = (sc.originalMaxPositionEmbeddings / wavelen - sc.lowFreqFactor) / (sc.highFreqFactor - sc.lowFreqFactor);
    inv[j] = (1 - smooth) * (freq / sc.factor) + smooth * freq;
  }
  return inv;
}

/** y (out) = W (out, in) · x (in) [+ bias]. */
function matVec(w: Float32Array, x: Float64Array, y: Float64Array, bias: Float32Array | null): void {
  const n = x.length;
  for (let o = 0; o < y.length; o++) {
    let s = bias ? bias[o]! : 0;
    const base = o * n;
    for (let i = 0; i < n; i++) s += w[base + i]! * x[i]!;
    y[o] = s;
  }
}

/** out (H) = x[off .. off+H) / sqrt(mean(x²) + eps) * weight (HF LlamaRMSNorm). */
function rmsNorm(x: Float64Array, off: number, weight: Float32Array, eps: number, out: Float64Array): void {
  const n = weight.length;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += x[off + i]! * x[off + i]!;
  const r = 1 / sqrt(ss / n + eps);
  for (let i = 0; i < n; i++) out[i] = x[off + i]! * r * weight[i]!;
}
