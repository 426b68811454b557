/**
 * Specs of Phi-3's fused projections: row views of f32 and of GGML block rows, the row-count error, and fusing back.
 * The whole path (safetensors and GGUF fixtures through the engine) is model.golden.spec.ts's.
 */
import type { ModelSpec, QuantTensor } from '@flywheel/kernels';
import { fuseProjections, splitFusedProjections } from './fused-projections';

// hidden 32, so a row is one q8_0 block: q 2 heads of 16, k and v 1 head each; intermediate 3.
const spec: ModelSpec = {
  vocabSize: 4, hiddenSize: 32, intermediateSize: 3, numLayers: 1, numHeads: 2, numKvHeads: 1, headDim: 16,
  rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: null, tieWordEmbeddings: true, attentionBias: false, maxPositionEmbeddings: 8,
};
const rows = (n: number, from: number) => Float32Array.from({ length: n * 32 }, (_, i) => from + Math.floor(i / 32));

describe('fused projections', () => {
  it('splits f32 qkv_proj and gate_up_proj into row views and fuses them back', () => {
    const qkv = rows(64, 0), gateUp = rows(6, 100);
    const split = splitFusedProjections(
      new Map([
        ['model.layers.0.self_attn.qkv_proj.weight', { shape: [64, 32], data: qkv }],
        ['model.layers.0.mlp.gate_up_proj.weight', { shape: [6, 32], data: gateUp }],
        ['model.norm.weight', { shape: [32], data: new Float32Array(32) }],
      ]),
      spec,
      'x',
    );
    expect([...split.keys()].sort()).toEqual([
      'model.layers.0.mlp.gate_proj.weight', 'model.layers.0.mlp.up_proj.weight', 'model.layers.0.self_attn.k_proj.weight',
      'model.layers.0.self_attn.q_proj.weight', 'model.layers.0.self_attn.v_proj.weight', 'model.norm.weight',
    ]);
    expect(split.get('model.layers.0.self_attn.k_proj.weight')).toEqual({ shape: [16, 32], data: rows(16, 32) });
    expect(split.get('model.layers.0.self_attn.v_proj.weight')!.data[0]).toBe(48);
    expect(split.get('model.layers.0.mlp.up_proj.weight')).toEqual({ shape: [3, 32], data: rows(3, 103) });
    expect(split.get('model.layers.0.self_attn.q_proj.weight')!.data.buffer).toBe(qkv.buffer); // a view, not a copy
    const fused = fuseProjections([...split].map(([name, t]) => ({ name, ...t })), spec);
    expect(fused.find((t) => t.name.endsWith('qkv_proj.weight'))).toEqual({ name: 'model.layers.0.self_attn.qkv_proj.weight', shape: [64, 32], data: qkv });
    expect(fused.find((t) => t.name.endsWith('gate_up_proj.weight'))!.data).toEqual(gateUp);
  });

  it('splits GGML block rows (a row of 32 q8_0 weights is one 34-byte block)', () => {
    const blocks = Uint8Array.from({ length: 6 * 34 }, (_, i) => Math.floor(i / 34));
    const t: QuantTensor = { dtype: 'q8_0', blocks };
    const split = splitFusedProjections(new Map([['model.layers.0.mlp.gate_up_proj.weight', { shape: [6, 32], data: t }]]), spec, 'x');
    const up = split.get('model.layers.0.mlp.up_proj.weight')!.data;
    expect(up.dtype).toBe('q8_0');
    expect(Array.from(up.blocks)).toEqual(Array.from(blocks.subarray(3 * 34)));
  });

  it('names the rows it expected', () => {
    expect(() =>
      splitFusedProjections(new Map([['model.layers.0.self_attn.qkv_proj.weight', { shape: [48, 32], data: rows(48, 0) }]]), spec, 'ck'),
    ).toThrow('tensor "model.layers.0.self_attn.qkv_proj.weight" has shape [48, 32], expected [64, 32] (32 rows of q_proj, 16 rows of k_proj, 16 rows of v_proj)');
  });
});
