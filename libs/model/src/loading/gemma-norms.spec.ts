/**
 * Specs of Gemma's norm-weight convention: which tensors are norms, f32(w + 1) on load and f32(x - 1) on write for a
 * spec with normWeightOffset only, new arrays (the loaded buffers are never written to).
 */
import type { ModelSpec } from '@flywheel/kernels';
import { addNormWeightOffset, isNormWeight, removeNormWeightOffset } from './gemma-norms';

const llama: ModelSpec = {
  vocabSize: 8, hiddenSize: 5, intermediateSize: 8, numLayers: 1, numHeads: 1, numKvHeads: 1, headDim: 4, rmsNormEps: 1e-6,
  ropeTheta: 10000, ropeScaling: null, tieWordEmbeddings: true, attentionBias: false, maxPositionEmbeddings: 16,
};
const spec: ModelSpec = { ...llama, normWeightOffset: true };

describe('Gemma norm weights', () => {
  it('knows every RMSNorm weight of a Gemma or Llama checkpoint and nothing else', () => {
    const norms = [
      'model.norm.weight',
      'model.layers.0.input_layernorm.weight',
      'model.layers.0.post_attention_layernorm.weight',
      'model.layers.11.pre_feedforward_layernorm.weight',
      'model.layers.11.post_feedforward_layernorm.weight',
      'model.layers.2.self_attn.q_norm.weight',
      'model.layers.2.self_attn.k_norm.weight',
    ];
    const others = ['model.embed_tokens.weight', 'lm_head.weight', 'score.weight', 'model.layers.0.self_attn.q_proj.weight', 'model.layers.0.mlp.down_proj.weight', 'model.layers.0.self_attn.q_proj.bias'];
    expect(norms.filter(isNormWeight)).toEqual(norms);
    expect(others.filter(isNormWeight)).toEqual([]);
  });

  it('adds 1 in f32 to the norms of a normWeightOffset spec on load, into new arrays', () => {
    const w = Float32Array.from([0, 0.1, -0.75, 1e-9, -2]);
    const proj = Float32Array.from([0.5, -0.5]);
    const tensors = new Map([
      ['model.layers.0.input_layernorm.weight', { shape: [5], data: w }],
      ['model.layers.0.self_attn.q_proj.weight', { shape: [1, 2], data: proj }],
    ]);
    const out = addNormWeightOffset(tensors, spec);
    expect(Array.from(out.get('model.layers.0.input_layernorm.weight')!.data)).toEqual([1, Math.fround(Math.fround(0.1) + 1), 0.25, 1, -1]);
    expect(out.get('model.layers.0.input_layernorm.weight')!.shape).toEqual([5]);
    expect(out.get('model.layers.0.self_attn.q_proj.weight')!.data).toBe(proj);
    expect(Array.from(w)).toEqual(Array.from(Float32Array.from([0, 0.1, -0.75, 1e-9, -2])));
    expect(addNormWeightOffset(tensors, llama)).toBe(tensors);
  });

  it('subtracts it again on write: the stored w comes back wherever f32(1 + w) kept it', () => {
    const w = Float32Array.from([0, 0.1, -0.75, 0.3125, -2]);
    const loaded = addNormWeightOffset(new Map([['model.norm.weight', { data: w }]]), spec).get('model.norm.weight')!.data;
    const written = removeNormWeightOffset([{ name: 'model.norm.weight', shape: [5], data: loaded }, { name: 'lm_head.weight', shape: [5], data: w }], spec);
    // 0.1 is not: f32(1 + 0.1) - 1 is the nearest f32 to 0.1 on 1's coarser grid.
    expect(Array.from(written[0].data)).toEqual([0, Math.fround(Math.fround(1 + Math.fround(0.1)) - 1), -0.75, 0.3125, -2]);
    expect(written[0].shape).toEqual([5]);
    expect(written[1].data).toBe(w);
    expect(removeNormWeightOffset([{ name: 'model.norm.weight', data: loaded }], llama)[0].data).toBe(loaded);
  });
});
