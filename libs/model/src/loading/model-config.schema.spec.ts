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
        'unsupported architecture GPT2LMHeadModel; Flywheel serves Llama-family models (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM)',
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
