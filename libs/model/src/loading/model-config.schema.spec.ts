/**
 * Specs of config.json parsing: models/stories260K's spec, transformers defaults per family, RoPE variants, and the
 * errors for architectures and features Flywheel cannot serve. Pure: no weights are read.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseModelConfig } from './model-config.schema';
import { ModelLoadError } from './model-load.error';
import { committedModelDir } from './model-files.testing';

const base = {
  vocab_size: 100,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 8,
};

describe('parseModelConfig', () => {
  it('reads the models/stories260K config into the expected ModelSpec', () => {
    const file = path.join(committedModelDir(), 'config.json');
    const config = parseModelConfig(JSON.parse(readFileSync(file, 'utf8')), file);
    expect(config.architecture).toBe('LlamaForCausalLM');
    expect(config.spec).toEqual({
      vocabSize: 512,
      hiddenSize: 64,
      intermediateSize: 172,
      numLayers: 5,
      numHeads: 8,
      numKvHeads: 4,
      headDim: 8,
      rmsNormEps: 1e-5,
      ropeTheta: 10000,
      ropeScaling: null,
      tieWordEmbeddings: true,
      attentionBias: false,
      maxPositionEmbeddings: 512,
    });
    expect(config.bosTokenId).toBe(1);
    expect(config.eosTokenIds).toEqual([2]);
  });

  it('applies transformers defaults for a minimal Llama config', () => {
    const { spec } = parseModelConfig({ ...base, architectures: ['LlamaForCausalLM'] });
    expect(spec.numKvHeads).toBe(8);
    expect(spec.headDim).toBe(8);
    expect(spec.tieWordEmbeddings).toBe(false);
    expect(spec.attentionBias).toBe(false);
    expect(spec.rmsNormEps).toBe(1e-6);
    expect(spec.ropeTheta).toBe(10000);
    expect(spec.maxPositionEmbeddings).toBe(2048);
  });

  it('gives Qwen2 its q/k/v bias and honours an explicit head_dim', () => {
    const config = parseModelConfig({ ...base, architectures: ['Qwen2ForCausalLM'], head_dim: 16, num_key_value_heads: 2 });
    expect(config.spec.attentionBias).toBe(true);
    expect(config.spec.headDim).toBe(16);
    expect(config.spec.numKvHeads).toBe(2);
  });

  it('gives Qwen3 its per-head q/k norms, no bias, and Qwen3Config defaults (head_dim 128 when absent)', () => {
    const c = parseModelConfig({ ...base, model_type: 'qwen3' });
    expect(c.architecture).toBe('Qwen3ForCausalLM');
    expect(c.spec).toMatchObject({ qkNorm: true, attentionBias: false, headDim: 128, rmsNormEps: 1e-6, maxPositionEmbeddings: 32768 });
    const rm = parseModelConfig({ ...base, architectures: ['Qwen3ForSequenceClassification'], head_dim: 16, num_labels: 1 });
    expect(rm).toMatchObject({ architecture: 'Qwen3ForSequenceClassification', numLabels: 1, spec: { qkNorm: true, headDim: 16 } });
    expect(parseModelConfig({ ...base, model_type: 'qwen2' }).spec.qkNorm).toBeUndefined();
  });

  it('gives SmolLM3 its NoPE layers (every 4th by default, or no_rope_layers), a tied head and SmolLM3Config defaults', () => {
    const c = parseModelConfig({ ...base, model_type: 'smollm3', num_hidden_layers: 8 });
    expect(c.architecture).toBe('SmolLM3ForCausalLM');
    expect(c.spec).toMatchObject({ noRopeLayers: [3, 7], tieWordEmbeddings: true, ropeTheta: 2000000, rmsNormEps: 1e-6, maxPositionEmbeddings: 32768 });
    const listed = parseModelConfig({ ...base, model_type: 'smollm3', no_rope_layers: [0, 1, 1], tie_word_embeddings: false });
    expect(listed.spec).toMatchObject({ noRopeLayers: [0], tieWordEmbeddings: false });
    expect(parseModelConfig({ ...base, model_type: 'smollm3', no_rope_layers: [1, 1] }).spec.noRopeLayers).toBeUndefined();
    expect(parseModelConfig({ ...base, model_type: 'smollm3', no_rope_layer_interval: 2 }).spec.noRopeLayers).toEqual([1]);
    expect(() => parseModelConfig({ ...base, model_type: 'smollm3', no_rope_layers: [1] })).toThrow('no_rope_layers has 1 entries for 2 layers');
    expect(() => parseModelConfig({ ...base, model_type: 'smollm3', use_sliding_window: true, sliding_window: 4096 })).toThrow(
      /use_sliding_window: true for SmolLM3/,
    );
    expect(() => parseModelConfig({ ...base, model_type: 'smollm3', layer_types: ['full_attention', 'sliding_attention'] })).toThrow(
      /unsupported layer_types \["full_attention","sliding_attention"\]/,
    );
  });

  it('reads Phi-3: no bias whatever attention_bias says, Phi3Config defaults, plain RoPE over the whole head', () => {
    const c = parseModelConfig({ ...base, model_type: 'phi3', attention_bias: true, sliding_window: 2047 });
    expect(c.architecture).toBe('Phi3ForCausalLM');
    expect(c.slidingWindow).toBe(2047);
    expect(c.spec).toMatchObject({ attentionBias: false, tieWordEmbeddings: false, rmsNormEps: 1e-5, maxPositionEmbeddings: 4096, ropeScaling: null });
    expect(c.spec.rotaryDim).toBeUndefined();
    expect(c.spec.longRope).toBeUndefined();
  });

  it('reads Phi-4-mini style partial RoPE and longrope (attention factor from max / original positions)', () => {
    const short = [1, 1.5, 2], long = [2, 4, 8];
    const c = parseModelConfig({
      ...base, model_type: 'phi3', partial_rotary_factor: 0.75, max_position_embeddings: 131072, original_max_position_embeddings: 4096,
      rope_scaling: { type: 'longrope', short_factor: short, long_factor: long },
    });
    // head_dim 8, 0.75 of it: 6 rotated dims, 3 factors per set.
    expect(c.spec.rotaryDim).toBe(6);
    expect(c.spec.longRope).toEqual({
      shortFactor: short, longFactor: long, originalMaxPositionEmbeddings: 4096,
      attentionFactor: Math.fround(Math.sqrt(1 + Math.log(32) / Math.log(4096))),
    });
    // transformers 5 keeps them in rope_parameters; "su" is longrope's old name; an explicit attention_factor wins.
    const v5 = parseModelConfig({
      ...base, model_type: 'phi3', partial_rotary_factor: undefined, max_position_embeddings: 4096,
      rope_parameters: { rope_type: 'su', rope_theta: 250000, partial_rotary_factor: 0.75, original_max_position_embeddings: 4096,
        short_factor: short, long_factor: long, attention_factor: 1.25 },
    });
    expect(v5.spec).toMatchObject({ rotaryDim: 6, ropeTheta: 250000, longRope: { originalMaxPositionEmbeddings: 4096, attentionFactor: 1.25 } });
    const phi = { ...base, model_type: 'phi3', original_max_position_embeddings: 4096 };
    expect(() => parseModelConfig({ ...phi, rope_scaling: { type: 'longrope', short_factor: short, long_factor: [1, 2, 3, 4] } })).toThrow(
      'rope_scaling "longrope": short_factor has 3 factors, expected rotated dims / 2 = 4',
    );
    expect(() => parseModelConfig({ ...phi, rope_scaling: { type: 'longrope', short_factor: short } })).toThrow(/needs short_factor and long_factor/);
    expect(() => parseModelConfig({ ...base, model_type: 'phi3', rope_scaling: { type: 'longrope', short_factor: [1, 1, 1, 1], long_factor: [1, 1, 1, 1] } })).toThrow(
      /needs original_max_position_embeddings/,
    );
    expect(() => parseModelConfig({ ...base, model_type: 'phi3', partial_rotary_factor: 0.1 })).toThrow(/gives 0 rotated dims/);
    expect(() => parseModelConfig({ ...base, model_type: 'llama', partial_rotary_factor: 0.5 })).toThrow(
      'unsupported partial_rotary_factor 0.5 for LlamaForCausalLM; RoPE must cover the whole head (only Phi3 rotates part of it)',
    );
    expect(() => parseModelConfig({ ...base, model_type: 'llama', rope_scaling: { type: 'longrope' } })).toThrow(/unsupported rope_scaling type "longrope"/);
  });

  it('infers the architecture from model_type and reads the sliding window of Mistral', () => {
    const config = parseModelConfig({ ...base, model_type: 'mistral', sliding_window: 4096 });
    expect(config.architecture).toBe('MistralForCausalLM');
    expect(config.slidingWindow).toBe(4096);
  });

  it('accepts a Llama reward model and counts its labels', () => {
    const config = parseModelConfig({ ...base, architectures: ['LlamaForSequenceClassification'], num_labels: 1 });
    expect(config.numLabels).toBe(1);
  });

  it('accepts a Qwen2 reward model: its labels and Qwen2 q/k/v bias', () => {
    const config = parseModelConfig({ ...base, architectures: ['Qwen2ForSequenceClassification'], model_type: 'qwen2', num_labels: 1 });
    expect(config.architecture).toBe('Qwen2ForSequenceClassification');
    expect(config.numLabels).toBe(1);
    expect(config.spec.attentionBias).toBe(true);
  });

  it('parses llama3 rope scaling, in both rope_scaling and transformers 5 rope_parameters', () => {
    const scaling = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };
    const expected = { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 };
    expect(parseModelConfig({ ...base, architectures: ['LlamaForCausalLM'], rope_theta: 500000, rope_scaling: scaling }).spec)
      .toMatchObject({ ropeTheta: 500000, ropeScaling: expected });
    expect(
      parseModelConfig({ ...base, architectures: ['LlamaForCausalLM'], rope_parameters: { ...scaling, rope_theta: 500000 } }).spec,
    ).toMatchObject({ ropeTheta: 500000, ropeScaling: expected });
    expect(
      parseModelConfig({ ...base, architectures: ['LlamaForCausalLM'], rope_scaling: { rope_type: 'default' } }).spec.ropeScaling,
    ).toBeNull();
  });

  it('rejects other rope scaling types by name', () => {
    expect(() =>
      parseModelConfig({ ...base, architectures: ['LlamaForCausalLM'], rope_scaling: { type: 'yarn', factor: 4 } }),
    ).toThrow(/unsupported rope_scaling type "yarn"/);
  });

  it('rejects architectures outside the Llama family with the list of supported ones', () => {
    expect(() => parseModelConfig({ ...base, architectures: ['GPT2LMHeadModel'] }, 'gpt2/config.json')).toThrow(
      new ModelLoadError(
        'unsupported architecture GPT2LMHeadModel; Flywheel serves Llama-family models (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM, SmolLM3ForCausalLM, Phi3ForCausalLM)',
        'gpt2/config.json',
      ),
    );
  });

  it('names the bad field of an invalid config', () => {
    expect(() => parseModelConfig({ ...base, architectures: ['LlamaForCausalLM'], hidden_size: -1 })).toThrow(/hidden_size/);
    expect(() => parseModelConfig({ ...base, architectures: ['LlamaForCausalLM'], num_key_value_heads: 3 })).toThrow(
      /not a multiple of num_key_value_heads 3/,
    );
    expect(() => parseModelConfig({ ...base, architectures: ['LlamaForCausalLM'], mlp_bias: true })).toThrow(/mlp_bias/);
  });
});
