/**
 * Specs of config.json parsing: models/stories260K's spec, transformers defaults per family, RoPE variants, Gemma 2/3
 * and sliding-window layers, and the errors for architectures and features Flywheel cannot serve. Pure: no weights are
 * read.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parseModelConfig } from './model-config.schema';
import { ModelLoadError } from './model-load.error';
import { committedModelDir, FIXTURES_DIR } from './model-files.testing';

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
    // Its sliding_window is not applied (as llama.cpp, which disables Phi-3's): full attention.
    expect(c.slidingWindow).toBeNull();
    expect(c.spec.slidingWindow).toBeUndefined();
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

  it('infers the architecture from model_type and applies the sliding window of Mistral to every layer', () => {
    const config = parseModelConfig({ ...base, model_type: 'mistral', sliding_window: 1024 });
    expect(config.architecture).toBe('MistralForCausalLM');
    expect(config.slidingWindow).toBe(1024);
    expect(config.spec.slidingWindow).toBe(1024);
    expect(config.spec.slidingLayers).toBeUndefined();
    // MistralConfig's default window is 4096; null (Mistral v0.2 and later) turns it off.
    expect(parseModelConfig({ ...base, model_type: 'mistral' }).spec.slidingWindow).toBe(4096);
    const none = parseModelConfig({ ...base, model_type: 'mistral', sliding_window: null });
    expect(none.slidingWindow).toBeNull();
    expect(none.spec).not.toHaveProperty('slidingWindow');
    expect(parseModelConfig({ ...base, model_type: 'mistral', sliding_window: 8, layer_types: ['sliding_attention', 'sliding_attention'] }).spec.slidingWindow).toBe(8);
    expect(() => parseModelConfig({ ...base, model_type: 'mistral', sliding_window: 8, layer_types: ['full_attention', 'sliding_attention'] })).toThrow(
      'unsupported layer_types ["full_attention","sliding_attention"] for MistralForCausalLM; its sliding_window (8) applies to every layer',
    );
    // Llama has no sliding layers.
    expect(parseModelConfig({ ...base, model_type: 'llama', sliding_window: 8 }).spec.slidingWindow).toBeUndefined();
  });

  it('gives Qwen2 / Qwen3 with use_sliding_window their window on the layers from max_window_layers on', () => {
    const qwen = { ...base, num_hidden_layers: 4, use_sliding_window: true, sliding_window: 16 };
    expect(parseModelConfig({ ...qwen, model_type: 'qwen2', max_window_layers: 2 })).toMatchObject({
      slidingWindow: 16,
      spec: { slidingWindow: 16, slidingLayers: [2, 3] },
    });
    expect(parseModelConfig({ ...qwen, model_type: 'qwen3', max_window_layers: 0 }).spec).toMatchObject({ slidingWindow: 16 });
    expect(parseModelConfig({ ...qwen, model_type: 'qwen3', max_window_layers: 0 }).spec.slidingLayers).toBeUndefined();
    // Qwen2Config's default max_window_layers is 28: no layer of a 4-layer model slides.
    expect(parseModelConfig({ ...qwen, model_type: 'qwen2' }).spec.slidingWindow).toBeUndefined();
    // Explicit layer_types win; without use_sliding_window there is no window at all.
    expect(parseModelConfig({ ...qwen, model_type: 'qwen2', layer_types: ['sliding_attention', 'full_attention', 'full_attention', 'full_attention'] }).spec)
      .toMatchObject({ slidingWindow: 16, slidingLayers: [0] });
    const off = parseModelConfig({ ...qwen, model_type: 'qwen2', use_sliding_window: false, max_window_layers: 0 });
    expect([off.slidingWindow, off.spec.slidingWindow]).toEqual([null, undefined]);
    expect(() => parseModelConfig({ ...qwen, model_type: 'qwen2', use_sliding_window: false, layer_types: ['sliding_attention', 'full_attention', 'full_attention', 'full_attention'] }))
      .toThrow('layer_types ["sliding_attention","full_attention"] has "sliding_attention" layers but no sliding window is configured');
  });

  const fixtureConfig = (name: string) => JSON.parse(readFileSync(path.join(FIXTURES_DIR, name, 'config.json'), 'utf8')) as Record<string, unknown>;

  it('reads the tiny-gemma2 fixture: GeGLU, scaled embeddings, query scale, soft caps, sandwich norms, even layers sliding', () => {
    const c = parseModelConfig(fixtureConfig('tiny-gemma2'));
    expect(c.architecture).toBe('Gemma2ForCausalLM');
    expect(c.spec).toEqual({
      vocabSize: 128, hiddenSize: 32, intermediateSize: 64, numLayers: 4, numHeads: 4, numKvHeads: 2, headDim: 16,
      rmsNormEps: 1e-6, ropeTheta: 10000, ropeScaling: null, tieWordEmbeddings: true, attentionBias: false,
      maxPositionEmbeddings: 64,
      hiddenAct: 'gelu_tanh', embedScale: Math.fround(Math.sqrt(32)), attnScale: 0.25, attnSoftcap: 2, finalSoftcap: 3,
      sandwichNorms: true, normWeightOffset: true, slidingWindow: 4, slidingLayers: [0, 2],
    });
    expect(c).toMatchObject({ bosTokenId: 2, eosTokenIds: [1], padTokenId: 0, slidingWindow: 4 });
  });

  it('reads the tiny-gemma3 fixture: q/k norms, no soft caps, 5 sliding layers of 6 with their own RoPE base', () => {
    const c = parseModelConfig(fixtureConfig('tiny-gemma3'));
    expect(c.architecture).toBe('Gemma3ForCausalLM');
    expect(c.spec).toEqual({
      vocabSize: 128, hiddenSize: 32, intermediateSize: 64, numLayers: 6, numHeads: 4, numKvHeads: 1, headDim: 16,
      rmsNormEps: 1e-6, ropeTheta: 1000000, ropeScaling: null, tieWordEmbeddings: true, attentionBias: false,
      maxPositionEmbeddings: 64, qkNorm: true,
      hiddenAct: 'gelu_tanh', embedScale: Math.fround(Math.sqrt(32)), attnScale: 0.25,
      sandwichNorms: true, normWeightOffset: true, slidingWindow: 4, slidingLayers: [0, 1, 2, 3, 4], ropeLocalTheta: 10000,
    });
  });

  it('applies Gemma2Config defaults: head_dim 256, caps 50 / 30, window 4096 on even layers, tied, 8192 positions', () => {
    const c = parseModelConfig({ ...base, model_type: 'gemma2', num_hidden_layers: 5 });
    expect(c.spec).toMatchObject({
      headDim: 256, tieWordEmbeddings: true, ropeTheta: 10000, rmsNormEps: 1e-6, maxPositionEmbeddings: 8192,
      attnScale: 1 / 16, embedScale: 8, attnSoftcap: 50, finalSoftcap: 30, slidingWindow: 4096, slidingLayers: [0, 2, 4],
    });
    expect(c.spec).not.toHaveProperty('qkNorm');
    expect(c.spec).not.toHaveProperty('ropeLocalTheta');
    // null turns a cap off; query_pre_attn_scalar sets the query scale (Gemma 2 27B: hidden / heads = 144).
    const uncapped = parseModelConfig({ ...base, model_type: 'gemma2', attn_logit_softcapping: null, final_logit_softcapping: null, query_pre_attn_scalar: 144 });
    expect(uncapped.spec).not.toHaveProperty('attnSoftcap');
    expect(uncapped.spec).not.toHaveProperty('finalSoftcap');
    expect(uncapped.spec.attnScale).toBe(144 ** -0.5);
    // transformers ignores hidden_act for Gemma (gemma-2 configs carry both keys).
    expect(parseModelConfig({ ...base, model_type: 'gemma2', hidden_act: 'gelu', hidden_activation: 'gelu_pytorch_tanh' }).spec.hiddenAct).toBe('gelu_tanh');
  });

  it('applies Gemma3TextConfig defaults: rope_theta 1e6, local base 1e4, every 6th layer full, no caps, 131072 positions', () => {
    const c = parseModelConfig({ ...base, model_type: 'gemma3_text', num_hidden_layers: 8 });
    expect(c.architecture).toBe('Gemma3ForCausalLM');
    expect(c.spec).toMatchObject({
      qkNorm: true, headDim: 256, tieWordEmbeddings: true, ropeTheta: 1000000, ropeLocalTheta: 10000, maxPositionEmbeddings: 131072,
      slidingWindow: 4096, slidingLayers: [0, 1, 2, 3, 4, 6, 7],
    });
    expect(c.spec).not.toHaveProperty('attnSoftcap');
    expect(c.spec).not.toHaveProperty('finalSoftcap');
    // sliding_window_pattern, and layer_types over it; every layer sliding: no slidingLayers, the local base stays.
    expect(parseModelConfig({ ...base, model_type: 'gemma3_text', num_hidden_layers: 4, sliding_window_pattern: 2, sliding_window: 512 }).spec)
      .toMatchObject({ slidingWindow: 512, slidingLayers: [0, 2] });
    const allSliding = parseModelConfig({ ...base, model_type: 'gemma3_text', rope_local_base_freq: 20000 }).spec;
    expect(allSliding).toMatchObject({ slidingWindow: 4096, ropeLocalTheta: 20000 });
    expect(allSliding).not.toHaveProperty('slidingLayers');
    const allFull = parseModelConfig({ ...base, model_type: 'gemma3_text', layer_types: ['full_attention', 'full_attention'] }).spec;
    expect(allFull).not.toHaveProperty('slidingWindow');
    expect(allFull).not.toHaveProperty('ropeLocalTheta');
    // transformers 5: one RoPE per layer type in rope_parameters.
    const v5 = parseModelConfig({
      ...base, model_type: 'gemma3_text', num_hidden_layers: 6,
      rope_parameters: { full_attention: { rope_type: 'default', rope_theta: 500000 }, sliding_attention: { rope_type: 'default', rope_theta: 5000 } },
    });
    expect(v5.spec).toMatchObject({ ropeTheta: 500000, ropeLocalTheta: 5000, slidingLayers: [0, 1, 2, 3, 4] });
  });

  it('reads a text-only model_type "gemma3" config through its text_config and refuses the multimodal one', () => {
    const text = { ...base, head_dim: 16, sliding_window: 8 };
    const c = parseModelConfig({ model_type: 'gemma3', architectures: ['Gemma3ForCausalLM'], text_config: text, eos_token_id: [1, 106] });
    expect(c.architecture).toBe('Gemma3ForCausalLM');
    expect(c.spec).toMatchObject({ headDim: 16, qkNorm: true, slidingWindow: 8 });
    expect(c.eosTokenIds).toEqual([1, 106]);
    expect(parseModelConfig({ ...text, model_type: 'gemma3' }).architecture).toBe('Gemma3ForCausalLM');
    const multimodal = 'unsupported architecture Gemma3ForConditionalGeneration (multimodal Gemma 3: a vision tower and language_model.* weights); ' +
      'Flywheel serves text-only Gemma 3 (Gemma3ForCausalLM, model_type "gemma3_text", such as gemma-3-1b)';
    expect(() => parseModelConfig({ model_type: 'gemma3', architectures: ['Gemma3ForConditionalGeneration'], text_config: text, vision_config: {} })).toThrow(multimodal);
    expect(() => parseModelConfig({ model_type: 'gemma3', text_config: text, vision_config: { hidden_size: 1152 } })).toThrow(multimodal);
  });

  it('refuses the Gemma variants the engine cannot run, naming what', () => {
    const g3 = { ...base, model_type: 'gemma3_text' };
    // Gemma 3 4B and larger: linear scaling of the full-attention layers only (sliding layers keep their local base).
    expect(parseModelConfig({ ...g3, rope_scaling: { rope_type: 'linear', factor: 8 } }).spec.ropeLinearFactor).toBe(8);
    expect(parseModelConfig({ ...g3, rope_parameters: { full_attention: { rope_type: 'linear', factor: 8 } } }).spec.ropeLinearFactor).toBe(8);
    expect(parseModelConfig({ ...base, model_type: 'llama', rope_scaling: { type: 'linear', factor: 2 } }).spec.ropeLinearFactor).toBe(2);
    expect(() => parseModelConfig({ ...g3, rope_scaling: { rope_type: 'yarn', factor: 8 } })).toThrow(
      'unsupported rope_scaling type "yarn" for Gemma3ForCausalLM; Flywheel runs Gemma with plain RoPE and linear scaling of the full-attention layers',
    );
    expect(() => parseModelConfig({ ...g3, rope_parameters: { sliding_attention: { rope_type: 'linear', factor: 8 } } })).toThrow(/rope_scaling type "linear"/);
    expect(() => parseModelConfig({ ...base, model_type: 'gemma2', rope_scaling: { rope_type: 'linear', factor: 8 } })).toThrow(/rope_scaling type "linear" for Gemma2ForCausalLM/);
    expect(() => parseModelConfig({ ...g3, rope_scaling: { rope_type: 'linear' } })).toThrow('rope_scaling "linear" needs a factor');
    expect(() => parseModelConfig({ ...base, model_type: 'gemma2', hidden_activation: 'gelu' })).toThrow(
      'unsupported hidden_activation "gelu" for Gemma2ForCausalLM; Flywheel\'s GeGLU MLP needs "gelu_pytorch_tanh"',
    );
    expect(parseModelConfig({ ...base, model_type: 'gemma2', hidden_activation: 'gelu_tanh' }).spec.hiddenAct).toBe('gelu_tanh');
    expect(() => parseModelConfig({ ...base, model_type: 'gemma2', attention_bias: true })).toThrow(/attention_bias: true for Gemma2ForCausalLM/);
    expect(() => parseModelConfig({ ...g3, layer_types: ['sliding_attention', 'chunked_attention'] })).toThrow(
      'unsupported layer_types ["sliding_attention","chunked_attention"]; Flywheel runs "full_attention" and "sliding_attention" layers only',
    );
    expect(() => parseModelConfig({ ...g3, layer_types: ['sliding_attention'] })).toThrow('layer_types has 1 entries for 2 layers');
    expect(() => parseModelConfig({ ...g3, sliding_window: null, layer_types: ['sliding_attention', 'full_attention'] })).toThrow(
      /has "sliding_attention" layers but no sliding window is configured/,
    );
  });

  it('accepts Gemma reward models: Gemma2ForSequenceClassification and the text-only Gemma3TextForSequenceClassification', () => {
    const g2 = parseModelConfig({ ...base, architectures: ['Gemma2ForSequenceClassification'], model_type: 'gemma2', num_labels: 1 });
    expect(g2).toMatchObject({ architecture: 'Gemma2ForSequenceClassification', numLabels: 1 });
    // The same spec as the causal LM: Gemma 2's caps (the final one applies to LM logits only), its sliding layers.
    expect(g2.spec).toEqual(parseModelConfig({ ...base, model_type: 'gemma2' }).spec);
    expect(g2.spec).toMatchObject({ finalSoftcap: 30, attnSoftcap: 50, slidingLayers: [0], normWeightOffset: true });
    const g3 = { ...base, model_type: 'gemma3_text', sliding_window_pattern: 2 };
    const rm = parseModelConfig({ ...g3, architectures: ['Gemma3TextForSequenceClassification'], id2label: { 0: 'LABEL_0' } });
    expect(rm).toMatchObject({ architecture: 'Gemma3TextForSequenceClassification', numLabels: 1, spec: { qkNorm: true, slidingLayers: [0] } });
    expect(rm.spec).toEqual(parseModelConfig(g3).spec);
    // transformers' AutoModelForSequenceClassification builds Gemma3TextForSequenceClassification for a Gemma3TextConfig.
    expect(parseModelConfig({ ...g3, architectures: ['Gemma3ForSequenceClassification'], num_labels: 1 }).architecture).toBe('Gemma3TextForSequenceClassification');
    // Its Gemma3ForSequenceClassification over a Gemma3Config is the multimodal model.
    expect(() => parseModelConfig({ model_type: 'gemma3', architectures: ['Gemma3ForSequenceClassification'], text_config: { ...base }, num_labels: 1 })).toThrow(
      'unsupported architecture Gemma3ForSequenceClassification with model_type "gemma3" (the multimodal Gemma 3 classifier: a vision tower and ' +
        'model.language_model.* weights); Flywheel scores with text-only Gemma 3 reward models (Gemma3TextForSequenceClassification, model_type "gemma3_text")',
    );
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
        'unsupported architecture GPT2LMHeadModel; Flywheel serves Llama-family and Gemma models (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM, SmolLM3ForCausalLM, Phi3ForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM)',
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
