/**
 * Specs of the GGUF reader: stories260K.gguf and the python-written tiny-gqa and tiny-gemma GGUFs must give
 * bit-identical (or, for Q8_0, within-half-a-step) weights to their safetensors twins, Gemma's with the (1 + w) norms
 * the HF loader forms, and the same spec as their config.json; corrupt and truncated copies must fail cleanly.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { loadModelWeights } from './checkpoint.loader';
import { isNormWeight } from './gemma-norms';
import { modelSpecFromConfig } from './model-config.schema';
import { ModelLoadError } from './model-load.error';
import { committedModelDir, FIXTURES_DIR, STORIES_GGUF } from './model-files.testing';
import { ggufToHfTensorName, permuteQkRows, readGguf, unpermuteQkRows } from './gguf.reader';
import { readSafetensorsFile } from './safetensors.reader';

function expectBitIdentical(actual: Float32Array | undefined, expected: Float32Array | undefined, name: string) {
  if (actual === undefined || expected === undefined) throw new Error(`${name} missing`);
  expect(actual.length).toBe(expected.length);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  const firstDiff = a.findIndex((v, i) => v !== e[i]);
  expect({ name, firstDiff }).toEqual({ name, firstDiff: -1 });
}

describe('GGUF reader', () => {
  const storiesGguf = () => STORIES_GGUF;
  const storiesHf = committedModelDir;

  it('permuteQkRows and unpermuteQkRows are inverses that move rows between layouts', () => {
    const data = Float32Array.from({ length: 2 * 8 * 3 }, (_, i) => i);
    const permuted = permuteQkRows(data, 2, 8, 3);
    expect(permuted).not.toEqual(data);
    expect(unpermuteQkRows(permuted, 2, 8, 3)).toEqual(data);
    // GGUF row 1 of head 0 is the first row of HF's second half (rotate_half partner of row 0).
    expect(Array.from(permuted.subarray(3, 6))).toEqual([12, 13, 14]);
  });

  it('reads stories260K.gguf into the same spec and bit-identical weights as models/stories260K', async () => {
    const model = await readGguf(storiesGguf());
    const hfSpec = modelSpecFromConfig(JSON.parse(readFileSync(path.join(storiesHf(), 'config.json'), 'utf8')));
    expect(model.architecture).toBe('LlamaForCausalLM');
    // The GGUF stores a copy of the tied embedding as output.weight; the reader folds it back into a tie.
    expect(model.spec).toEqual(hfSpec);
    const hf = await readSafetensorsFile(path.join(storiesHf(), 'model.safetensors'));
    expect([...model.weights.keys()].sort()).toEqual([...hf.keys()].sort());
    for (const [name, tensor] of hf) expectBitIdentical(model.weights.get(name), tensor.data, name);
    expect(new Set(model.tensorDtypes.values())).toEqual(new Set(['f32']));
  });

  it('exposes the GGUF vocabulary metadata', async () => {
    const { vocab } = await readGguf(storiesGguf());
    expect(vocab).toMatchObject({ model: 'llama', bosTokenId: 1, eosTokenId: 2, unkTokenId: 0, padTokenId: null });
    expect(vocab?.tokens.length).toBe(512);
    expect(vocab?.tokens.slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '<0x00>']);
  });

  it('un-permutes Q/K, including biases, of the python-written tiny-gqa.gguf', async () => {
    const model = await readGguf(path.join(FIXTURES_DIR, 'tiny-gqa.gguf'));
    const hfDir = path.join(FIXTURES_DIR, 'tiny-gqa');
    expect(model.spec).toEqual(modelSpecFromConfig(JSON.parse(readFileSync(path.join(hfDir, 'config.json'), 'utf8'))));
    expect(model.spec).toMatchObject({ headDim: 16, hiddenSize: 32, attentionBias: true, tieWordEmbeddings: false });
    const hf = await readSafetensorsFile(path.join(hfDir, 'model.safetensors'));
    expect(model.weights.size).toBe(hf.size);
    for (const [name, tensor] of hf) expectBitIdentical(model.weights.get(name), tensor.data, name);
  });

  it('dequantizes Q8_0 to within half a quantization step of the f32 weights', async () => {
    const q8 = await readGguf(path.join(FIXTURES_DIR, 'tiny-gqa-q8_0.gguf'));
    const f32 = await readGguf(path.join(FIXTURES_DIR, 'tiny-gqa.gguf'));
    expect(q8.tensorDtypes.get('model.layers.0.mlp.down_proj.weight')).toBe('q8_0');
    expect(q8.tensorDtypes.get('model.layers.0.self_attn.q_proj.bias')).toBe('f32');
    for (const [name, exact] of f32.weights) {
      const approx = q8.weights.get(name);
      if (approx === undefined) throw new Error(name);
      if (q8.tensorDtypes.get(name) !== 'q8_0') {
        expectBitIdentical(approx, exact, name);
        continue;
      }
      // Blocks of 32 run along rows in GGUF order, but q/k rows were permuted whole, so a row's blocks stay whole.
      let worst = 0;
      for (let b = 0; b < exact.length; b += 32) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(exact[b + j]));
        // half a step, plus the f16 rounding of the scale
        const bound = (amax / 127) * (0.5 + 127 * 2 ** -11) + 1e-7;
        for (let j = 0; j < 32; j++) worst = Math.max(worst, Math.abs(approx[b + j] - exact[b + j]) / bound);
      }
      expect({ name, withinBound: worst <= 1 }).toEqual({ name, withinBound: true });
    }
  });

  it('names Gemma\'s sandwich norms by the architecture: ffn_norm is the MLP\'s input norm there', () => {
    expect(ggufToHfTensorName('blk.3.ffn_norm.weight')).toBe('model.layers.3.post_attention_layernorm.weight');
    expect(ggufToHfTensorName('blk.3.ffn_norm.weight', 'gemma2')).toBe('model.layers.3.pre_feedforward_layernorm.weight');
    expect(ggufToHfTensorName('blk.3.post_attention_norm.weight', 'gemma3')).toBe('model.layers.3.post_attention_layernorm.weight');
    expect(ggufToHfTensorName('blk.3.post_ffw_norm.weight', 'gemma2')).toBe('model.layers.3.post_feedforward_layernorm.weight');
    expect(ggufToHfTensorName('blk.0.attn_k_norm.weight', 'gemma3')).toBe('model.layers.0.self_attn.k_norm.weight');
    expect(ggufToHfTensorName('blk.3.post_ffw_norm.weight')).toBeNull();
  });

  it.each(['tiny-gemma2', 'tiny-gemma3', 'tiny-gemma3-linear'])('reads %s.gguf (norms stored as 1 + w) into the spec and weights of its safetensors twin', async (name) => {
    const model = await readGguf(path.join(FIXTURES_DIR, `${name}.gguf`));
    const hfDir = path.join(FIXTURES_DIR, name);
    expect(model.architecture).toBe(name === 'tiny-gemma2' ? 'Gemma2ForCausalLM' : 'Gemma3ForCausalLM');
    // rope.scaling.type "linear", factor 8: the full-attention layer's positions / 8, as config.json's rope_scaling.
    expect(model.spec.ropeLinearFactor).toBe(name === 'tiny-gemma3-linear' ? 8 : undefined);
    expect(model.spec).toEqual(modelSpecFromConfig(JSON.parse(readFileSync(path.join(hfDir, 'config.json'), 'utf8'))));
    // The HF loader hands the engine f32(1 + w) for every norm weight w the safetensors store; the GGUF holds 1 + w.
    const stored = await readSafetensorsFile(path.join(hfDir, 'model.safetensors'));
    const hf = await loadModelWeights(hfDir);
    expect([...model.weights.keys()].sort()).toEqual([...hf.weights.keys()].sort());
    for (const [n, t] of stored) {
      if (!isNormWeight(n)) {
        expectBitIdentical(model.weights.get(n), t.data, n);
        continue;
      }
      const fromGguf = model.weights.get(n)!;
      const worst = t.data.reduce((m, w, i) => Math.max(m, Math.abs(fromGguf[i] - (1 + w)), Math.abs(hf.weights.get(n)![i] - fromGguf[i])), 0);
      expect({ n, worst: worst <= 1e-6 }).toEqual({ n, worst: true });
    }
  });

  describe('Gemma metadata llama.cpp defaults', () => {
    let tmp: string;
    beforeAll(() => {
      tmp = mkdtempSync(path.join(tmpdir(), 'flywheel-gguf-gemma-'));
    });
    afterAll(() => rmSync(tmp, { recursive: true, force: true }));
    /** The fixture with metadata keys renamed to same-length names llama.cpp does not read. */
    const without = async (fixture: string, keys: string[]) => {
      let bytes = readFileSync(path.join(FIXTURES_DIR, fixture));
      for (const key of keys) {
        const at = bytes.indexOf(key);
        if (at < 0) throw new Error(`${key} not in ${fixture}`);
        bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from(key.slice(0, -1) + '~'), bytes.subarray(at + key.length)]);
      }
      const file = path.join(tmp, fixture);
      writeFileSync(file, bytes);
      return (await readGguf(file)).spec;
    };

    it('Gemma 2: window 4096 and soft caps 50 / 30 when the file omits them', async () => {
      const spec = await without('tiny-gemma2.gguf', ['gemma2.attention.sliding_window', 'gemma2.attn_logit_softcapping', 'gemma2.final_logit_softcapping']);
      expect(spec).toMatchObject({ slidingWindow: 4096, slidingLayers: [0, 2], attnSoftcap: 50, finalSoftcap: 30 });
    });

    it('Gemma 3: no sliding_window, no sliding layers (and no local RoPE base); rope.freq_base defaults to 1e4', async () => {
      const spec = await without('tiny-gemma3.gguf', ['gemma3.attention.sliding_window', 'gemma3.rope.freq_base']);
      expect(spec).toMatchObject({ ropeTheta: 10000, qkNorm: true });
      expect(spec).not.toHaveProperty('slidingWindow');
      expect(spec).not.toHaveProperty('slidingLayers');
      expect(spec).not.toHaveProperty('ropeLocalTheta');
    });
  });

  describe('broken files give a ModelLoadError naming the file', () => {
    let tmp: string;
    beforeAll(() => {
      tmp = mkdtempSync(path.join(tmpdir(), 'flywheel-gguf-'));
    });
    afterAll(() => rmSync(tmp, { recursive: true, force: true }));

    const stories = () => readFileSync(storiesGguf());
    const tiny = () => readFileSync(path.join(FIXTURES_DIR, 'tiny-gqa.gguf'));
    /** Overwrites bytes right after the first occurrence of `marker`. */
    const patchAfter = (buf: Buffer, marker: string, bytes: Buffer, skip = 0) => {
      const at = buf.indexOf(marker) + Buffer.byteLength(marker) + skip;
      const out = Buffer.from(buf);
      bytes.copy(out, at);
      return out;
    };
    const u32 = (v: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(v);
      return b;
    };

    const cases: [string, () => Uint8Array, RegExp][] = [
      ['an empty file', () => new Uint8Array(0), /not a GGUF file/],
      ['a wrong magic', () => Buffer.concat([Buffer.from('GGML'), stories().subarray(4)]), /not a GGUF file/],
      ['an unsupported version', () => patchAfter(stories(), 'GGUF', u32(7)), /unsupported GGUF version 7/],
      ['a big-endian file', () => patchAfter(stories(), 'GGUF', u32(0x03000000)), /big-endian/],
      ['truncation inside the counts', () => stories().subarray(0, 10), /GGUF header ends early: tensor count needs 8 bytes at byte 8 but the file is 10 bytes/],
      ['truncation inside the vocabulary', () => stories().subarray(0, 5000), /metadata "tokenizer\.ggml\.(tokens|scores|token_type)" claims \d+ elements|ends early/],
      ['truncation inside the tensor infos', () => stories().subarray(0, 13900), /ends early|truncated/],
      ['truncation inside the tensor data', () => stories().subarray(0, 600_000), /tensor "blk\.\d\.[a-z_]+\.weight" needs bytes \d+\.\.\d+ but the file is 600000 bytes \(truncated\?\)/],
      ['an absurd string length', () => { const b = Buffer.from(stories()); b.writeBigUInt64LE(0xffffffffffffn, 24); return b; }, /metadata key #0 claims \d+ bytes but only \d+ remain/],
      ['an architecture outside the Llama family', () => patchAfter(tiny(), 'general.architecture', Buffer.from('bloom'), 12), /unsupported GGUF architecture "bloom"; Flywheel serves Llama-family and Gemma models \(general\.architecture llama, qwen2, qwen3, smollm3, phi3, gemma2 or gemma3\)/],
      ['a k-quant tensor whose rows its super-blocks cannot split', () => patchAfter(tiny(), 'blk.0.attn_q.weight', u32(12), 4 + 16), /tensor "blk\.0\.attn_q\.weight" \(q4_k\) has ne\[0\] 32, not a multiple of 256/],
      ['a GGML type the engine does not serve', () => patchAfter(tiny(), 'blk.0.attn_q.weight', u32(16), 4 + 16), /tensor "blk\.0\.attn_q\.weight" has GGML type IQ2_XXS; Flywheel loads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K/],
      ['a missing hyperparameter', () => patchAfter(tiny(), 'llama.block_count', Buffer.from('x'), -1), /llama\.block_count is missing/],
    ];
    it.each(cases)('%s', async (_what, bytes, message) => {
      const file = path.join(tmp, 'broken.gguf');
      writeFileSync(file, bytes());
      const err = await readGguf(file).catch((e: unknown) => e);
      if (!(err instanceof ModelLoadError)) throw new Error(`expected a ModelLoadError, got ${String(err)}`);
      expect(err.message).toMatch(message);
      expect(err.file).toBe(file);
    });
  });
});
