/**
 * The safetensors / HF-directory writer: byte layout read back by our reader, F32/BF16/F16 rounding, tiny-gqa, Phi-3,
 * SmolLM3, Gemma 2/3 (norms back to w, Gemma's config fields) and sliding-window round trips through loadModelWeights,
 * a reward model the loader reads as one, and the specs no config can describe. The training-state files beside a
 * checkpoint are @flywheel/train's (training-checkpoint.io.spec.ts).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { loadModelWeights } from './checkpoint.loader';
import { FIXTURES_DIR } from './model-files.testing';
import { readSafetensorsFile } from './safetensors.reader';
import { hfConfigFor, serializeSafetensors, writeHfCheckpoint } from './safetensors.writer';

describe('safetensors writer', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(path.join(tmpdir(), 'st-writer-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a header padded to 8 bytes, tensors sorted and contiguous, read back exactly (F32)', async () => {
    const a = Float32Array.from([1, -2.5, 3e-8, 65504]);
    const b = Float32Array.from([0.1, 0.2]);
    const buf = serializeSafetensors([
      { name: 'z.weight', shape: [2, 2], data: a },
      { name: 'a.bias', shape: [2], data: b },
    ]);
    const n = Number(buf.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets: number[] }>;
    expect(Object.keys(header)).toEqual(['__metadata__', 'a.bias', 'z.weight']);
    expect(header['a.bias'].data_offsets).toEqual([0, 8]);
    writeFileSync(path.join(dir, 'x.safetensors'), buf);
    const back = await readSafetensorsFile(path.join(dir, 'x.safetensors'));
    expect(Array.from(back.get('z.weight')!.data)).toEqual(Array.from(a));
    expect(back.get('z.weight')!.shape).toEqual([2, 2]);
    expect(Array.from(back.get('a.bias')!.data)).toEqual(Array.from(b));
  });

  it('rounds to BF16 and F16 to nearest even, as the reader decodes them', async () => {
    const x = Float32Array.from([1 + 2 ** -8, 1 + 3 * 2 ** -8, -3.14159, 1e-6, 70000, 0]);
    for (const dtype of ['BF16', 'F16'] as const) {
      writeFileSync(path.join(dir, 'h.safetensors'), serializeSafetensors([{ name: 't', shape: [6], data: x }], { dtype }));
      const got = (await readSafetensorsFile(path.join(dir, 'h.safetensors'))).get('t')!;
      expect(got.sourceDtype).toBe(dtype);
      if (dtype === 'BF16') {
        expect(got.data[0]).toBe(1); // tie rounds to even
        expect(got.data[1]).toBe(1 + 4 * 2 ** -8);
        expect(Math.abs(got.data[2] + 3.14159)).toBeLessThan(0.02);
      } else {
        expect(got.data[0]).toBe(1 + 2 ** -8); // exact in f16
        expect(got.data[4]).toBe(Infinity); // above the f16 range
        expect(Math.abs(got.data[3] - 1e-6)).toBeLessThan(6e-8); // subnormal
      }
    }
  });

  it('writes an HF directory that loadModelWeights reads back bit for bit, with tokenizer files copied', async () => {
    const src = await loadModelWeights(path.join(FIXTURES_DIR, 'tiny-gqa'));
    const tok = path.join(dir, 'tok');
    await writeHfCheckpoint(tok, { spec: src.spec, weights: src.weights }); // also creates the folder
    writeFileSync(path.join(tok, 'tokenizer.json'), '{"fake": true}');
    const out = path.join(dir, 'out');
    const base = JSON.parse(readFileSync(path.join(FIXTURES_DIR, 'tiny-gqa', 'config.json'), 'utf8')) as Record<string, unknown>;
    await writeHfCheckpoint(out, { spec: src.spec, weights: src.weights, baseConfig: base, tokenizerDir: tok });
    const back = await loadModelWeights(out);
    expect(back.spec).toEqual(src.spec);
    expect(back.sourceDtype).toBe('f32');
    for (const [name, t] of src.weights) expect(Array.from(back.weights.get(name)!)).toEqual(Array.from(t));
    expect(readFileSync(path.join(out, 'tokenizer.json'), 'utf8')).toBe('{"fake": true}');
    const cfg = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg.architectures).toEqual(['LlamaForCausalLM']);
    expect(cfg.bos_token_id).toBe(1); // kept from the base config

    // An independent reader (scripts/reference/llama_reference.py, numpy) sees the same tensors, where available.
    const py = '/usr/bin/python3';
    const script = path.join(FIXTURES_DIR, '..', '..', 'scripts', 'reference');
    if (!existsSync(py)) return;
    const code =
      `import sys, json; sys.path.insert(0, ${JSON.stringify(script)}); from llama_reference import read_safetensors; ` +
      `w = read_safetensors(__import__('pathlib').Path(${JSON.stringify(path.join(out, 'model.safetensors'))})); ` +
      `print(json.dumps({k: [list(v.shape), float(v.astype('float64').sum())] for k, v in w.items()}))`;
    const r = spawnSync(py, ['-c', code], { encoding: 'utf8' });
    if (r.status !== 0 && /No module named/.test(r.stderr)) return;
    expect(r.status).toBe(0);
    const seen = JSON.parse(r.stdout) as Record<string, [number[], number]>;
    expect(Object.keys(seen).sort()).toEqual([...src.weights.keys()].sort());
    for (const [name, t] of src.weights) {
      const sum = Array.from(t).reduce((a, b) => a + b, 0);
      expect(Math.abs(seen[name][1] - sum)).toBeLessThan(1e-6 * (1 + Math.abs(sum)) + 1e-4);
    }
    expect(seen['model.norm.weight'][0]).toEqual([src.spec.hiddenSize]);
  });

  it('writes a Phi-3 checkpoint with fused qkv_proj / gate_up_proj and its longrope config, read back bit for bit', async () => {
    const src = await loadModelWeights(path.join(FIXTURES_DIR, 'tiny-phi3'));
    const baseConfig = JSON.parse(readFileSync(path.join(FIXTURES_DIR, 'tiny-phi3', 'config.json'), 'utf8')) as Record<string, unknown>;
    const out = path.join(dir, 'phi3');
    await writeHfCheckpoint(out, { spec: src.spec, weights: src.weights, baseConfig });
    const names = [...(await readSafetensorsFile(path.join(out, 'model.safetensors'))).keys()];
    expect(names).toContain('model.layers.1.self_attn.qkv_proj.weight');
    expect(names).toContain('model.layers.1.mlp.gate_up_proj.weight');
    expect(names.some((n) => /\.(q|k|v|gate|up)_proj\./.test(n))).toBe(false);
    // The same bytes as the committed fixture's tensors, and the same config fields transformers' Phi3Config reads.
    expect(readFileSync(path.join(out, 'model.safetensors'))).toEqual(readFileSync(path.join(FIXTURES_DIR, 'tiny-phi3', 'model.safetensors')));
    const written = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(written).toMatchObject({
      architectures: ['Phi3ForCausalLM'], model_type: 'phi3', partial_rotary_factor: 0.75, original_max_position_embeddings: 4,
      rope_scaling: baseConfig.rope_scaling,
    });
    const back = await loadModelWeights(out);
    expect(back.spec).toEqual(src.spec);
    for (const [name, w] of src.weights) expect(Array.from(back.weights.get(name)!)).toEqual(Array.from(w));
    // Without a base config the spec's LongRoPE still makes it a Phi-3 checkpoint.
    const bare = path.join(dir, 'phi3-bare');
    await writeHfCheckpoint(bare, { spec: src.spec, weights: src.weights });
    expect((await loadModelWeights(bare)).spec).toEqual(src.spec);
  });

  it('writes a SmolLM3 checkpoint with its no_rope_layers flags, read back as the same spec', async () => {
    const src = await loadModelWeights(path.join(FIXTURES_DIR, 'tiny-smollm3'));
    expect(src.spec.noRopeLayers).toEqual([3]);
    const out = path.join(dir, 'smollm3');
    await writeHfCheckpoint(out, { spec: src.spec, weights: src.weights });
    const written = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(written).toMatchObject({ architectures: ['SmolLM3ForCausalLM'], model_type: 'smollm3', no_rope_layers: [1, 1, 1, 0], tie_word_embeddings: false });
    expect((await loadModelWeights(out)).spec).toEqual(src.spec);
  });

  it.each(['tiny-gemma2', 'tiny-gemma3', 'tiny-gemma3-linear'])('writes %s back: norm weights as the stored w, Gemma\'s config, the same spec and weights', async (name) => {
    const fixture = path.join(FIXTURES_DIR, name);
    const src = await loadModelWeights(fixture);
    const out = path.join(dir, name);
    await writeHfCheckpoint(out, { spec: src.spec, weights: src.weights });
    // Byte for byte the fixture's tensors: every norm is w again (the fixture's 1 + w are exact in f32).
    expect(readFileSync(path.join(out, 'model.safetensors'))).toEqual(readFileSync(path.join(fixture, 'model.safetensors')));
    const written = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    const original = JSON.parse(readFileSync(path.join(fixture, 'config.json'), 'utf8')) as Record<string, unknown>;
    const gemmaKeys = [
      'architectures', 'model_type', 'hidden_activation', 'query_pre_attn_scalar', 'attn_logit_softcapping', 'final_logit_softcapping',
      'sliding_window', 'layer_types', 'head_dim', 'rope_theta', 'tie_word_embeddings',
      ...(name === 'tiny-gemma2' ? ['hidden_act'] : ['rope_local_base_freq', 'sliding_window_pattern']),
      ...(name === 'tiny-gemma3-linear' ? ['rope_scaling'] : []),
    ];
    for (const key of gemmaKeys) expect({ key, value: written[key] }).toEqual({ key, value: original[key] });
    const back = await loadModelWeights(out);
    expect(back.spec).toEqual(src.spec);
    const bytes = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    for (const [n, w] of src.weights) expect({ n, same: bytes(back.weights.get(n)!).equals(bytes(w)) }).toEqual({ n, same: true });
    // From the GGUF (whose norms are 1 + w already) likewise.
    const fromGguf = await loadModelWeights(path.join(FIXTURES_DIR, `${name}.gguf`));
    const viaGguf = path.join(dir, `${name}-from-gguf`);
    await writeHfCheckpoint(viaGguf, { spec: fromGguf.spec, weights: fromGguf.weights });
    expect(readFileSync(path.join(viaGguf, 'model.safetensors'))).toEqual(readFileSync(path.join(fixture, 'model.safetensors')));
    expect((await loadModelWeights(viaGguf)).spec).toEqual(src.spec);
  });

  it('keeps sliding windows: Mistral on every layer, Qwen2 from max_window_layers on, or any layers by layer_types', async () => {
    const mistral = await loadModelWeights(path.join(FIXTURES_DIR, 'tiny-mistral-swa'));
    const out = path.join(dir, 'mistral');
    await writeHfCheckpoint(out, { spec: mistral.spec, weights: mistral.weights });
    expect(JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'))).toMatchObject({ architectures: ['MistralForCausalLM'], model_type: 'mistral', sliding_window: 4 });
    expect((await loadModelWeights(out)).spec).toEqual(mistral.spec);
    // Without a window a Mistral base writes sliding_window null (MistralConfig's default would be 4096).
    const { slidingWindow: _, ...full } = mistral.spec;
    expect(hfConfigFor(full, null, { architectures: ['MistralForCausalLM'], model_type: 'mistral', sliding_window: 4 }, 'F32').sliding_window).toBeNull();
    const qwen = { ...mistral.spec, numLayers: 4, attentionBias: true, slidingLayers: [2, 3] };
    const qwenConfig = hfConfigFor(qwen, null, { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2' }, 'F32');
    expect(qwenConfig).toMatchObject({ use_sliding_window: true, sliding_window: 4, max_window_layers: 2, layer_types: ['full_attention', 'full_attention', 'sliding_attention', 'sliding_attention'] });
    const split = hfConfigFor({ ...qwen, slidingLayers: [0, 3] }, null, { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2' }, 'F32');
    expect(split).toMatchObject({ use_sliding_window: true, layer_types: ['sliding_attention', 'full_attention', 'full_attention', 'sliding_attention'] });
    expect(split).not.toHaveProperty('max_window_layers');
  });

  it('refuses what no written config could describe instead of writing a different model', async () => {
    const gemma = await loadModelWeights(path.join(FIXTURES_DIR, 'tiny-gemma2'));
    const gqa = await loadModelWeights(path.join(FIXTURES_DIR, 'tiny-gqa'));
    expect(() => hfConfigFor({ ...gqa.spec, attnSoftcap: 50 }, null, null, 'F32')).toThrow('cannot write the checkpoint as Llama: its config has no way to say attnSoftcap');
    expect(() => hfConfigFor({ ...gqa.spec, slidingWindow: 4, slidingLayers: [1] }, null, null, 'F32')).toThrow(/as Llama: its config has no way to say slidingLayers/);
    expect(() => hfConfigFor({ ...gemma.spec, attentionBias: true, embedScale: 1 }, null, null, 'F32')).toThrow(
      'cannot write the checkpoint as Gemma2: its config has no way to say embedScale 1, attentionBias',
    );
    // A Gemma spec makes a Gemma checkpoint whatever the base config says.
    expect(hfConfigFor(gemma.spec, null, { architectures: ['LlamaForCausalLM'], model_type: 'llama' }, 'F32')).toMatchObject({
      architectures: ['Gemma2ForCausalLM'], model_type: 'gemma2', hidden_act: 'gelu_pytorch_tanh',
    });
  });

  it('writes a reward model (LlamaForSequenceClassification, score.weight, no lm_head) the loader reads as one', async () => {
    const src = await loadModelWeights(path.join(FIXTURES_DIR, 'tiny-gqa'));
    const weights = new Map(src.weights);
    weights.set('score.weight', Float32Array.from({ length: src.spec.hiddenSize }, (_, i) => i / 100));
    const out = path.join(dir, 'rm');
    await writeHfCheckpoint(out, { spec: src.spec, weights, scoreLabels: 1 });
    const back = await loadModelWeights(out);
    expect(back.architecture).toBe('LlamaForSequenceClassification');
    expect(back.numLabels).toBe(1);
    expect(back.weights.has('lm_head.weight')).toBe(false);
    expect(Array.from(back.weights.get('score.weight')!)).toEqual(Array.from(weights.get('score.weight')!));
  });

  it('names a Gemma reward model as transformers does: Gemma2ForSequenceClassification, text-only Gemma3TextForSequenceClassification', async () => {
    for (const [name, architecture, modelType] of [
      ['tiny-gemma2', 'Gemma2ForSequenceClassification', 'gemma2'],
      ['tiny-gemma3', 'Gemma3TextForSequenceClassification', 'gemma3_text'],
    ] as const) {
      const src = await loadModelWeights(path.join(FIXTURES_DIR, name));
      const baseConfig = JSON.parse(readFileSync(path.join(FIXTURES_DIR, name, 'config.json'), 'utf8')) as Record<string, unknown>;
      const weights = new Map(src.weights);
      weights.set('score.weight', Float32Array.from({ length: src.spec.hiddenSize }, (_, i) => i / 100));
      const out = path.join(dir, `rm-${name}`);
      await writeHfCheckpoint(out, { spec: src.spec, weights, scoreLabels: 1, baseConfig });
      const back = await loadModelWeights(out);
      expect({ architecture: back.architecture, numLabels: back.numLabels, spec: back.spec }).toEqual({ architecture, numLabels: 1, spec: src.spec });
      expect(JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8'))).toMatchObject({ model_type: modelType, final_logit_softcapping: baseConfig.final_logit_softcapping });
      for (const [tensor, data] of weights) expect({ tensor, same: Array.from(back.weights.get(tensor)!).every((x, i) => Object.is(x, data[i])) }).toEqual({ tensor, same: true });
    }
  });

  it('keeps the family of its base: a reward model trained from a Qwen2 policy is a Qwen2ForSequenceClassification', async () => {
    const src = await loadModelWeights(path.join(FIXTURES_DIR, 'tiny-gqa')); // q/k/v bias, as Qwen2 has
    const weights = new Map(src.weights);
    weights.delete('lm_head.weight');
    weights.set('score.weight', Float32Array.from({ length: src.spec.hiddenSize }, (_, i) => i / 100));
    const out = path.join(dir, 'rm-qwen2');
    await writeHfCheckpoint(out, { spec: src.spec, weights, scoreLabels: 1, baseConfig: { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2' } });
    const back = await loadModelWeights(out);
    expect(back.architecture).toBe('Qwen2ForSequenceClassification');
    expect(back.spec.attentionBias).toBe(true);
    expect(back.numLabels).toBe(1);
    // And its causal LM again from that reward model's config.
    const lm = path.join(dir, 'lm-from-rm');
    await writeHfCheckpoint(lm, { spec: src.spec, weights: src.weights, scoreLabels: null, baseConfig: { architectures: ['Qwen2ForSequenceClassification'], model_type: 'qwen2' } });
    expect((await loadModelWeights(lm)).architecture).toBe('Qwen2ForCausalLM');
  });
});
