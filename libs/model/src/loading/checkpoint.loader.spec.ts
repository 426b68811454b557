/**
 * Specs of loadCheckpoint / loadModelWeights over real and fixture checkpoints (HF directories and GGUF files), the
 * golden fixtures' consistency with them, and the errors a wrong or damaged checkpoint must produce.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { ModelSpec } from '@flywheel/kernels';
import { loadCheckpoint, loadModelWeights } from './checkpoint.loader';
import { isNormWeight } from './gemma-norms';
import { ModelLoadError } from './model-load.error';
import { readSafetensorsFile } from './safetensors.reader';
import { committedModelDir, FIXTURES_DIR, goldenCheckpointPath, readGolden, STORIES_GGUF } from './model-files.testing';

describe('loadCheckpoint', () => {
  const storiesHf = committedModelDir;
  const storiesGguf = () => STORIES_GGUF;
  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(path.join(tmpdir(), 'flywheel-checkpoint-'));
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('loads stories260K (models/stories260K) with tokenizer, chat template and generation defaults', async () => {
    const ckpt = await loadCheckpoint(storiesHf());
    expect(ckpt).toMatchObject({ id: 'stories260K', format: 'hf', architecture: 'LlamaForCausalLM', sourceDtype: 'f32' });
    expect(ckpt.weights.size).toBe(47);
    expect(ckpt.weights.has('lm_head.weight')).toBe(false);
    expect(ckpt.weights.get('model.layers.4.mlp.down_proj.weight')?.length).toBe(64 * 172);
    expect(ckpt.spec).toMatchObject({ numLayers: 5, numHeads: 8, numKvHeads: 4, headDim: 8, tieWordEmbeddings: true });
    expect(ckpt.generation).toMatchObject({ bosTokenId: 1, eosTokenIds: [1, 2], temperature: null });
    expect(ckpt.tokenizer.encode('Once upon a time')).toEqual([1, 403, 407, 261, 378]);
    expect(ckpt.chatTemplate?.render([{ role: 'user', content: 'Tell me a story.' }], { addGenerationPrompt: true })).toBe(
      '<s><|user|>\nTell me a story.\n<|assistant|>\n',
    );
  });

  it('loads stories260K.gguf with the HF tokenizer from tokenizerDir, matching the HF checkpoint', async () => {
    const fromGguf = await loadCheckpoint(storiesGguf(), { tokenizerDir: storiesHf() });
    const fromHf = await loadModelWeights(storiesHf());
    expect(fromGguf).toMatchObject({ id: 'stories260K', format: 'gguf', sourceDtype: 'f32' });
    expect(fromGguf.spec).toEqual(fromHf.spec);
    expect(fromGguf.weights.get('model.layers.2.self_attn.k_proj.weight')).toEqual(
      fromHf.weights.get('model.layers.2.self_attn.k_proj.weight'),
    );
    expect(fromGguf.generation.eosTokenIds).toEqual([1, 2]);
    expect(fromGguf.ggufVocab?.tokens).toHaveLength(512);
  });

  it('asks for a tokenizer when a GGUF has none beside it and none in its metadata', async () => {
    await expect(loadCheckpoint(path.join(FIXTURES_DIR, 'tiny-gqa.gguf'))).rejects.toThrow(
      /no tokenizer\.json for tiny-gqa\.gguf and no tokenizer in the file's metadata; put tokenizer\.json \(\+ tokenizer_config\.json\) beside the file or pass tokenizerDir/,
    );
    await expect(loadModelWeights(path.join(FIXTURES_DIR, 'tiny-gqa.gguf'))).resolves.toMatchObject({ format: 'gguf' });
    // stories260K.gguf carries its vocabulary: it loads (gguf-tokenizer.spec.ts checks that tokenizer).
    await expect(loadCheckpoint(storiesGguf())).resolves.toMatchObject({ format: 'gguf' });
  });

  it('loads the tiny GQA fixture: untied head, q/k/v bias, head_dim 16 on hidden 32', async () => {
    const tiny = await loadModelWeights(path.join(FIXTURES_DIR, 'tiny-gqa'));
    expect(tiny.spec).toEqual({
      vocabSize: 128, hiddenSize: 32, intermediateSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16,
      rmsNormEps: 1e-5, ropeTheta: 10000, ropeScaling: null, tieWordEmbeddings: false, attentionBias: true,
      maxPositionEmbeddings: 64,
    });
    expect(tiny.weights.get('lm_head.weight')?.length).toBe(128 * 32);
    expect(tiny.weights.get('model.layers.1.self_attn.k_proj.bias')?.length).toBe(32);
    expect(tiny.weights.get('model.layers.0.self_attn.o_proj.weight')?.length).toBe(32 * 64);
    const gguf = await loadModelWeights(path.join(FIXTURES_DIR, 'tiny-gqa.gguf'));
    expect(gguf.spec).toEqual(tiny.spec);
  });

  it('loads the mixed BF16/F16/F32 fixture as the rounded f32 weights', async () => {
    const f32 = await loadModelWeights(path.join(FIXTURES_DIR, 'tiny-gqa'));
    const bf16 = await loadModelWeights(path.join(FIXTURES_DIR, 'tiny-gqa-bf16'));
    expect(bf16.sourceDtype).toBe('bf16');
    for (const [name, exact] of f32.weights) {
      const rounded = bf16.weights.get(name);
      if (rounded === undefined) throw new Error(name);
      const worst = exact.reduce((m, v, i) => Math.max(m, Math.abs(rounded[i] - v) / Math.max(Math.abs(v), 1e-30)), 0);
      expect({ name, ok: worst <= 2 ** -8 }).toEqual({ name, ok: true });
    }
  });

  it('loads llama3 rope scaling, multi-query attention and tied embeddings', async () => {
    const mqa = await loadModelWeights(path.join(FIXTURES_DIR, 'tiny-mqa-llama3'));
    expect(mqa.spec).toMatchObject({
      numHeads: 4, numKvHeads: 1, headDim: 8, tieWordEmbeddings: true, attentionBias: false,
      ropeScaling: { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 128 },
    });
    expect(mqa.weights.has('lm_head.weight')).toBe(false);
  });

  const llamaShape = { vocabSize: 128, hiddenSize: 32, intermediateSize: 64, headDim: 16, ropeScaling: null, attentionBias: false, maxPositionEmbeddings: 64 };
  const gemmaSpecs: Record<string, ModelSpec> = {
    'tiny-gemma2': {
      ...llamaShape, numLayers: 4, numHeads: 4, numKvHeads: 2, rmsNormEps: 1e-6, ropeTheta: 10000, tieWordEmbeddings: true,
      hiddenAct: 'gelu_tanh', embedScale: Math.fround(Math.sqrt(32)), attnScale: 0.25, attnSoftcap: 2, finalSoftcap: 3,
      sandwichNorms: true, normWeightOffset: true, slidingWindow: 4, slidingLayers: [0, 2],
    },
    'tiny-gemma3': {
      ...llamaShape, numLayers: 6, numHeads: 4, numKvHeads: 1, rmsNormEps: 1e-6, ropeTheta: 1000000, tieWordEmbeddings: true, qkNorm: true,
      hiddenAct: 'gelu_tanh', embedScale: Math.fround(Math.sqrt(32)), attnScale: 0.25,
      sandwichNorms: true, normWeightOffset: true, slidingWindow: 4, slidingLayers: [0, 1, 2, 3, 4], ropeLocalTheta: 10000,
    },
  };

  it.each(Object.keys(gemmaSpecs))('loads %s/ and its GGUF into one spec and the same (1 + w)-norm weights', async (name) => {
    const dir = path.join(FIXTURES_DIR, name);
    const hf = await loadModelWeights(dir);
    const gguf = await loadModelWeights(path.join(FIXTURES_DIR, `${name}.gguf`));
    expect(hf.spec).toEqual(gemmaSpecs[name]);
    expect(gguf.spec).toEqual(hf.spec);
    expect(hf.config?.slidingWindow).toBe(4);
    expect(hf.weights.has('lm_head.weight')).toBe(false);
    expect(hf.weights.has('model.layers.3.pre_feedforward_layernorm.weight')).toBe(true);
    expect(hf.weights.has('model.layers.3.post_feedforward_layernorm.weight')).toBe(true);
    expect(hf.weights.has('model.layers.0.self_attn.q_norm.weight')).toBe(name === 'tiny-gemma3');
    // The loader adds 1 to every norm weight the safetensors store (f32), and only to those.
    const stored = await readSafetensorsFile(path.join(dir, 'model.safetensors'));
    const norms = [...stored.keys()].filter(isNormWeight);
    expect(norms).toHaveLength(name === 'tiny-gemma2' ? 4 * 4 + 1 : 6 * 6 + 1);
    for (const [n, t] of stored) {
      const loaded = hf.weights.get(n)!;
      const want = isNormWeight(n) ? Float32Array.from(t.data, (w) => w + 1) : t.data;
      expect({ n, same: Buffer.compare(Buffer.from(loaded.buffer, loaded.byteOffset, loaded.byteLength), Buffer.from(want.buffer, want.byteOffset, want.byteLength)) }).toEqual({ n, same: 0 });
      const fromGguf = gguf.weights.get(n)!;
      const worst = loaded.reduce((m, x, i) => Math.max(m, Math.abs(x - fromGguf[i])), 0);
      expect({ n, worst: worst <= (isNormWeight(n) ? 1e-6 : 0) }).toEqual({ n, worst: true });
    }
  });

  it('loads tiny-mistral-swa with its window on every layer', async () => {
    const mistral = await loadModelWeights(path.join(FIXTURES_DIR, 'tiny-mistral-swa'));
    expect(mistral.architecture).toBe('MistralForCausalLM');
    expect(mistral.spec).toEqual({
      ...llamaShape, numLayers: 2, numHeads: 4, numKvHeads: 2, rmsNormEps: 1e-5, ropeTheta: 10000, tieWordEmbeddings: false, slidingWindow: 4,
    });
    expect(mistral.config?.slidingWindow).toBe(4);
  });

  it.each([
    'stories260K-hf', 'tiny-gqa', 'tiny-gqa-q8_0', 'tiny-gqa-bf16', 'tiny-mqa-llama3', 'tiny-qwen3', 'tiny-smollm3', 'tiny-phi3',
    'tiny-gemma2', 'tiny-gemma3', 'tiny-mistral-swa',
  ])(
    'golden fixture %s matches its checkpoints',
    async (name) => {
      const golden = readGolden(name);
      const expectedFloats = golden.cases.reduce((n, c) => n + c.shape[0] * c.shape[1], 0);
      expect(golden.logits.length).toBe(expectedFloats);
      for (const checkpoint of golden.checkpoints) {
        const { spec } = await loadModelWeights(goldenCheckpointPath(checkpoint));
        for (const c of golden.cases) {
          expect(c.shape).toEqual([c.tokens.length, spec.vocabSize]);
          expect(c.tokens.every((t) => t < spec.vocabSize)).toBe(true);
        }
      }
    },
  );

  describe('clear errors', () => {
    const tinyDirWith = (configPatch: Record<string, unknown>) => {
      const dir = mkdtempSync(path.join(tmp, 'tiny-'));
      const config = JSON.parse(readFileSync(path.join(FIXTURES_DIR, 'tiny-gqa', 'config.json'), 'utf8'));
      writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...config, ...configPatch }));
      copyFileSync(path.join(FIXTURES_DIR, 'tiny-gqa', 'model.safetensors'), path.join(dir, 'model.safetensors'));
      return dir;
    };

    it('names an unsupported architecture', async () => {
      const dir = tinyDirWith({ architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' });
      await expect(loadCheckpoint(dir)).rejects.toThrow(
        'unsupported architecture GPT2LMHeadModel; Flywheel serves Llama-family and Gemma models (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, MistralForCausalLM, SmolLM3ForCausalLM, Phi3ForCausalLM, Gemma2ForCausalLM, Gemma3ForCausalLM)',
      );
    });

    it('lists tensors the config needs but the file lacks', async () => {
      await expect(loadModelWeights(tinyDirWith({ num_hidden_layers: 3 }))).rejects.toThrow(
        /missing tensors for the configured model: model\.layers\.2\.input_layernorm\.weight/,
      );
    });

    it('names a tensor whose shape disagrees with the config', async () => {
      await expect(loadModelWeights(tinyDirWith({ intermediate_size: 48 }))).rejects.toThrow(
        /tensor "model\.layers\.0\.mlp\.(gate|up|down)_proj\.weight" has shape \[\d+, \d+\], expected/,
      );
    });

    it('names a tensor the config does not explain', async () => {
      await expect(loadModelWeights(tinyDirWith({ attention_bias: false }))).rejects.toThrow(
        /unexpected tensor "model\.layers\.\d\.self_attn\.[qkv]_proj\.bias"/,
      );
    });

    it('rejects paths that are neither a directory nor a .gguf file', async () => {
      await expect(loadCheckpoint(path.join(tmp, 'missing'))).rejects.toThrow(/checkpoint not found \(ENOENT\)/);
      const file = path.join(tmp, 'weights.bin');
      writeFileSync(file, 'x');
      await expect(loadCheckpoint(file)).rejects.toThrow(/expected a Hugging Face checkpoint directory or a \.gguf file/);
    });

    it('never fails with anything but a ModelLoadError on truncated copies', async () => {
      const sources = [path.join(FIXTURES_DIR, 'tiny-gqa.gguf'), path.join(FIXTURES_DIR, 'tiny-gqa', 'model.safetensors')];
      let seed = 12345;
      const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      for (const source of sources) {
        const bytes = readFileSync(source);
        const size = statSync(source).size;
        const dir = tinyDirWith({});
        for (let i = 0; i < 25; i++) {
          const cut = i < 5 ? [0, 4, 8, 24, size - 1][i] : Math.floor(random() * size);
          const target = source.endsWith('.gguf') ? path.join(tmp, 'cut.gguf') : path.join(dir, 'model.safetensors');
          writeFileSync(target, bytes.subarray(0, cut));
          const err = await loadModelWeights(source.endsWith('.gguf') ? target : dir).catch((e: unknown) => e);
          expect({ cut, isModelLoadError: err instanceof ModelLoadError }).toEqual({ cut, isModelLoadError: true });
        }
      }
    });
  });
});
