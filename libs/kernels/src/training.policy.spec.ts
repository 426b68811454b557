// The per-token RL step (policyForward / policyBackward): log-probabilities and entropies against a float64
// log-softmax of logits recomputed from the LM loss path, values against the scalar head, and the gradient of
// sum(dlogp * logp) + sum(dvalues * values) against central differences of the same native forward. Also that a
// stale pass (another step ran in between, or its backward already ran) is refused instead of using wrong
// activations.
import { makeRng, randomWeights } from './kernels.reference';
import { TINY_TRAIN_SPEC } from './training.reference';
import {
  createTrainableModel,
  freeTrainableModel,
  getGrads,
  getWeights,
  policyBackward,
  policyForward,
  setWeights,
  trainableWeightShapes,
  trainStep,
  zeroGrad,
  type ModelSpec,
  type TrainBatch,
} from '.';

const spec = TINY_TRAIN_SPEC;

function fixture() {
  const B = 2, T = 6, n = B * T;
  const rng = makeRng(21);
  const tokens = Int32Array.from({ length: n }, () => Math.floor(rng() * spec.vocabSize));
  const mask = Int32Array.from([1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1]); // right pad, left pad
  const targets = Int32Array.from({ length: n }, () => Math.floor(rng() * spec.vocabSize));
  const sel = Int32Array.from([0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 0]);
  const dlogp = Float32Array.from({ length: n }, (_, i) => (sel[i] ? rng() * 2 - 1 : 0));
  const dvalues = Float32Array.from({ length: n }, (_, i) => (mask[i] ? rng() * 2 - 1 : 0));
  const batch: TrainBatch = { B, T, tokens, mask };
  return { batch, targets, sel, dlogp, dvalues, n };
}

describe('policyForward / policyBackward (per-token RL step)', () => {
  it('log-probabilities match the weighted cross-entropy of the LM step, one slot at a time', async () => {
    const { batch, targets, sel, n } = fixture();
    const model = createTrainableModel(spec, randomWeights(spec, 3, trainableWeightShapes(spec)), { threads: 2 });
    try {
      const r = await policyForward(model, batch, { targets, sel });
      for (let i = 0; i < n; i++) {
        if (!sel[i]) {
          expect(r.logp[i]).toBe(0);
          continue;
        }
        const w = new Float32Array(n);
        w[i] = 1;
        const { loss } = await trainStep(model, batch, { targets, weights: w }, { gradScale: 0 });
        expect(Math.abs(r.logp[i] + loss)).toBeLessThan(1e-5 * Math.max(1, loss));
        // Entropy of a distribution over V tokens lies in (0, log V].
        expect(r.entropy[i]).toBeGreaterThan(0);
        expect(r.entropy[i]).toBeLessThanOrEqual(Math.log(spec.vocabSize) + 1e-5);
      }
    } finally {
      freeTrainableModel(model);
    }
  });

  async function gradientCheck(tied: boolean, over: Partial<ModelSpec> = {}): Promise<void> {
    const s = { ...spec, tieWordEmbeddings: tied, ...over };
    const base = randomWeights(s, 11, trainableWeightShapes(s, 1));
    const model = createTrainableModel(s, base, { numLabels: 1, threads: 2 });
    const { batch, targets, sel, dlogp, dvalues } = fixture();
    const objective = async (): Promise<number> => {
      const r = await policyForward(model, batch, { targets, sel, values: true });
      let j = 0;
      for (let i = 0; i < dlogp.length; i++) j += dlogp[i] * r.logp[i] + dvalues[i] * r.values![i];
      return j;
    };
    try {
      zeroGrad(model);
      const r = await policyForward(model, batch, { targets, sel, values: true });
      await policyBackward(model, r.pass, { dlogp, dvalues });
      const grads = getGrads(model);
      const rng = makeRng(8);
      const h = 1e-2;
      let checked = 0;
      for (const [name, w] of getWeights(model)) {
        for (let k = 0; k < 3; k++) {
          const i = name === 'model.embed_tokens.weight' ? batch.tokens[k + 1] * s.hiddenSize + k : Math.floor(rng() * w.length);
          const at = (x: number) => {
            const m = new Map(base);
            const p = Float32Array.from(w);
            p[i] = x;
            m.set(name, p);
            setWeights(model, m);
          };
          at(w[i] + h);
          const fp = await objective();
          at(w[i] - h);
          const fm = await objective();
          setWeights(model, base);
          const num = (fp - fm) / (2 * h);
          const ana = grads.get(name)![i];
          if (!(Math.abs(num - ana) <= 2e-3 + 2e-2 * Math.abs(num))) throw new Error(`${name}[${i}]: analytic ${ana} vs numeric ${num}`);
          checked++;
        }
      }
      expect(checked).toBeGreaterThan(20);
      // score.weight is the only value-head tensor: with dvalues alone its gradient is sum_i dvalues_i * x_i != 0.
      expect(Math.max(...Array.from(grads.get('score.weight')!, Math.abs))).toBeGreaterThan(0);
    } finally {
      freeTrainableModel(model);
    }
  }

  it('gradient of sum(dlogp*logp) + sum(dvalues*values) matches central differences (untied head, bias, padding)', () => gradientCheck(false));
  it('gradient matches central differences with tied embeddings', () => gradientCheck(true));
  it('gradient matches central differences through soft-capped logits (Gemma 2) and the other Gemma ops', () =>
    gradientCheck(true, { attentionBias: false, qkNorm: true, hiddenAct: 'gelu_tanh', embedScale: 4, attnSoftcap: 1.5, finalSoftcap: 2.5, sandwichNorms: true, slidingWindow: 2, ropeLocalTheta: 500 }));

  it('refuses a stale pass instead of back-propagating through other activations', async () => {
    const { batch, targets, sel, dlogp, n } = fixture();
    const model = createTrainableModel(spec, randomWeights(spec, 5, trainableWeightShapes(spec)), { threads: 1 });
    try {
      const first = await policyForward(model, batch, { targets, sel });
      await trainStep(model, batch, { targets, weights: new Float32Array(n).fill(1) }, { gradScale: 0 });
      await expect(policyBackward(model, first.pass, { dlogp })).rejects.toThrow(/activations of that forward are gone/);
      const second = await policyForward(model, batch, { targets, sel });
      await policyBackward(model, second.pass, { dlogp });
      await expect(policyBackward(model, second.pass, { dlogp })).rejects.toThrow(/gone/);
      await expect(policyForward(model, batch, { targets, sel, values: true })).rejects.toThrow(/scalar head with one label/);
      expect(() => policyBackward(model, second.pass, { dlogp: new Float32Array(3) })).toThrow(/B\*T/);
    } finally {
      freeTrainableModel(model);
    }
  });
});
