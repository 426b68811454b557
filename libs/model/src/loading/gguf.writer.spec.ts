/**
 * Specs of the GGUF writer: GGUF files written by llama.cpp (llama-quantize's Q4_K_M, the llama3-scaled, the biased and
 * the Gemma 2 / Gemma 3 / Qwen3 / SmolLM3 / Phi-3 python-written fixtures) read, written back and read again give the
 * same spec, tensor types, bytes, vocabulary and logits, with llama.cpp's metadata and tensor infos; Phi-3's fused
 * tensors are written from f32 and from quantized parts; specs llama.cpp would run differently are refused; the
 * synthetic vocab has llama.cpp's layout.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { createKvCache, createModel, forward, freeCache, freeModel, ops, type ServingWeightMap } from '@flywheel/kernels';
import { FIXTURES_DIR } from './model-files.testing';
import { parseGgufHeader, type GgufHeader } from './gguf-header.parser';
import { readGguf } from './gguf.reader';
import { syntheticSpmVocab, writeGguf } from './gguf.writer';

async function headerOf(file: string): Promise<GgufHeader> {
  const fh = await open(file);
  try {
    return await parseGgufHeader(fh, file);
  } finally {
    await fh.close();
  }
}

function bytesOf(t: Float32Array | { blocks: Uint8Array }): Buffer {
  return t instanceof Float32Array ? Buffer.from(t.buffer, t.byteOffset, t.byteLength) : Buffer.from(t.blocks);
}

/** Last-position logits of a short prompt, the engine keeping every tensor's own type. */
async function logitsOf(spec: Parameters<typeof createModel>[0], weights: ServingWeightMap): Promise<Float32Array> {
  const model = createModel(spec, weights, { dtype: 'auto', threads: 1 });
  const cache = createKvCache(model, 1, 16);
  try {
    const T = 5;
    return await forward(model, cache, {
      tokens: Int32Array.from([1, 7, 42, 99, 3]),
      positions: Int32Array.from({ length: T }, (_, i) => i),
      seqIndex: new Int32Array(T),
      blockTables: Int32Array.from([0]),
      maxBlocksPerSeq: 1,
      logitRows: Int32Array.from([T - 1]),
    });
  } finally {
    freeCache(cache);
    freeModel(model);
  }
}

describe('GGUF writer', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'gguf-writer-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each([
    ['quant/tiny-q4_k_m.gguf', 'Q4_K + Q6_K, untied'],
    ['tiny-gqa.gguf', 'f32, q/k/v biases, head_dim != hidden / heads'],
    ['tiny-mqa-llama3.gguf', 'llama3 rope_freqs'],
    ['tiny-gemma2.gguf', 'arch gemma2: soft caps, sliding window, sandwich norms as 1 + w'],
    ['tiny-gemma3.gguf', 'arch gemma3: q/k norms, global RoPE base'],
    ['tiny-gemma3-linear.gguf', 'arch gemma3 with linear RoPE scaling'],
    ['tiny-qwen3.gguf', 'arch qwen3: q/k norms, q/k rows as HF has them'],
    ['tiny-smollm3.gguf', 'arch smollm3: every 4th layer without RoPE, q/k permuted'],
    ['tiny-phi3.gguf', 'arch phi3: fused attn_qkv and ffn_up, LongRoPE factors, partial rotary'],
  ])('writes %s (%s) back as the same model', async (fixture) => {
    const source = path.join(FIXTURES_DIR, fixture);
    const original = await readGguf(source);
    const out = path.join(dir, path.basename(fixture));
    await writeGguf(out, { spec: original.spec, weights: original.servingWeights, name: original.name ?? undefined, vocab: original.vocab });
    const again = await readGguf(out);

    expect(again.spec).toEqual(original.spec);
    expect(again.name).toBe(original.name);
    expect(again.vocab).toEqual(original.vocab);
    expect([...again.tensorDtypes]).toEqual(expect.arrayContaining([...original.tensorDtypes]));
    expect(again.tensorDtypes.size).toBe(original.tensorDtypes.size);
    for (const [name, t] of original.servingWeights) {
      const back = again.servingWeights.get(name);
      if (back === undefined) throw new Error(`${name} missing`);
      expect({ name, same: bytesOf(back).equals(bytesOf(t)) }).toEqual({ name, same: true });
    }

    // llama.cpp's own file and ours agree on every {arch}.* key and on every tensor's name, shape and type. (For llama
    // we write key_length / value_length only when they differ from hidden / heads; convert_hf_to_gguf.py also does
    // whenever config.json names a head_dim.)
    const [theirs, ours] = [await headerOf(source), await headerOf(out)];
    const arch = String(theirs.metadata.get('general.architecture'));
    expect(ours.metadata.get('general.architecture')).toBe(arch);
    const implied = (h: GgufHeader, k: string) =>
      /^llama\.attention\.(key|value)_length$/.test(k) &&
      h.metadata.get(k) === Number(h.metadata.get('llama.embedding_length')) / Number(h.metadata.get('llama.attention.head_count'));
    const archKeys = (h: GgufHeader) =>
      new Map([...h.metadata].filter(([k]) => k.startsWith(`${arch}.`) && k !== 'llama.vocab_size' && !implied(h, k)));
    expect(archKeys(ours)).toEqual(archKeys(theirs));
    const infos = (h: GgufHeader) => h.tensors.map(({ name, dims, type }) => ({ name, dims, type })).sort((a, b) => a.name.localeCompare(b.name));
    expect(infos(ours)).toEqual(infos(theirs));
    expect(ours.tensors.every((t) => (ours.dataOffset + t.offset) % 32 === 0)).toBe(true);
  });

  it('keeps the logits of a llama-quantize file bit for bit', async () => {
    const original = await readGguf(path.join(FIXTURES_DIR, 'quant', 'tiny-q4_k_m.gguf'));
    const out = path.join(dir, 'logits.gguf');
    await writeGguf(out, { spec: original.spec, weights: original.servingWeights });
    const again = await readGguf(out);
    expect(again.vocab).toBeNull();
    expect(await logitsOf(again.spec, again.servingWeights)).toEqual(await logitsOf(original.spec, original.servingWeights));
    // Q4_K_M: llama.cpp's file type 15.
    expect((await headerOf(out)).metadata.get('general.file_type')).toBe(15);
  });

  it('keeps the logits of the Phi-3 fixture, short and long RoPE factors both used', async () => {
    // logitsOf's positions 0..4 cross tiny-phi3's original context of 4.
    const original = await readGguf(path.join(FIXTURES_DIR, 'tiny-phi3.gguf'));
    expect(original.spec.longRope?.originalMaxPositionEmbeddings).toBe(4);
    const out = path.join(dir, 'phi3-logits.gguf');
    await writeGguf(out, { spec: original.spec, weights: original.servingWeights });
    const again = await readGguf(out);
    expect(await logitsOf(again.spec, again.servingWeights)).toEqual(await logitsOf(original.spec, original.servingWeights));
  });

  it('fuses quantized Phi-3 projections block row by block row', async () => {
    const phi3 = await readGguf(path.join(FIXTURES_DIR, 'tiny-phi3.gguf'));
    const q8: ServingWeightMap = new Map([...phi3.servingWeights].map(([name, w]) => [name, /norm/.test(name) || !(w instanceof Float32Array) ? w : { dtype: 'q8_0' as const, blocks: ops.quantize('q8_0', w) }]));
    const out = path.join(dir, 'phi3-q8_0.gguf');
    await writeGguf(out, { spec: phi3.spec, weights: q8 });
    const again = await readGguf(out);
    expect(again.spec).toEqual(phi3.spec);
    for (const [name, t] of q8) expect({ name, same: bytesOf(again.servingWeights.get(name)!).equals(bytesOf(t)) }).toEqual({ name, same: true });
    const infos = (await headerOf(out)).tensors.filter((t) => t.name.startsWith('blk.0.'));
    expect(infos.map(({ name, dims, type }) => ({ name, dims, type })).sort((a, b) => a.name.localeCompare(b.name))).toEqual([
      { name: 'blk.0.attn_norm.weight', dims: [64], type: 0 },
      { name: 'blk.0.attn_output.weight', dims: [64, 64], type: 8 },
      { name: 'blk.0.attn_qkv.weight', dims: [64, 128], type: 8 },
      { name: 'blk.0.ffn_down.weight', dims: [64, 64], type: 8 },
      { name: 'blk.0.ffn_norm.weight', dims: [64], type: 0 },
      { name: 'blk.0.ffn_up.weight', dims: [64, 128], type: 8 },
    ]);
    const mixed = new Map(q8).set('model.layers.1.self_attn.k_proj.weight', phi3.weights.get('model.layers.1.self_attn.k_proj.weight')!);
    await expect(writeGguf(path.join(dir, 'never.gguf'), { spec: phi3.spec, weights: mixed })).rejects.toThrow(/layer 1's .* as one tensor, attn_qkv\.weight: they must share one type/);
  });

  it('stores f32 matrices as bf16 on request, norms staying f32', async () => {
    const original = await readGguf(path.join(FIXTURES_DIR, 'tiny-gqa.gguf'));
    const out = path.join(dir, 'bf16.gguf');
    await writeGguf(out, { spec: original.spec, weights: original.servingWeights, floatType: 'bf16' });
    const again = await readGguf(out);
    expect(again.tensorDtypes.get('model.layers.0.mlp.up_proj.weight')).toBe('bf16');
    expect(again.tensorDtypes.get('model.norm.weight')).toBe('f32');
    const exact = original.weights.get('model.layers.0.self_attn.q_proj.weight') as Float32Array;
    const rounded = again.weights.get('model.layers.0.self_attn.q_proj.weight') as Float32Array;
    // bf16 keeps 8 significant bits: relative error at most half an ulp, 2^-8, and rows still in HF order.
    expect(rounded.every((x, i) => Math.abs(x - exact[i]) <= Math.abs(exact[i]) * 2 ** -8)).toBe(true);
  });

  it('makes a SentencePiece vocab of any size with llama.cpp special and byte pieces', () => {
    const v = syntheticSpmVocab(300);
    expect(v.tokens).toHaveLength(300);
    expect(new Set(v.tokens).size).toBe(300);
    expect(v.tokens.slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '<0x00>']);
    expect(v.tokens[3 + 0x0a]).toBe('<0x0A>');
    expect(v.tokenTypes?.slice(0, 4)).toEqual([2, 3, 3, 6]);
    expect(v.tokenTypes?.[259]).toBe(1);
    expect(v).toMatchObject({ model: 'llama', bosTokenId: 1, eosTokenId: 2, unkTokenId: 0 });
    expect(() => syntheticSpmVocab(100)).toThrow(/259/);
  });

  it("keeps a vocabulary's add_space_prefix (Gemma's files say false)", async () => {
    const gemma = await readGguf(path.join(FIXTURES_DIR, 'tiny-gemma2.gguf'));
    const out = path.join(dir, 'vocab.gguf');
    const vocab = { ...syntheticSpmVocab(300), addSpacePrefix: false };
    await writeGguf(out, { spec: gemma.spec, weights: gemma.servingWeights, vocab });
    expect((await readGguf(out)).vocab).toEqual({ ...vocab, architecture: 'gemma2' });
    expect((await headerOf(out)).metadata.get('tokenizer.ggml.add_space_prefix')).toBe(false);
  });

  it('refuses a model its architecture cannot describe instead of writing a different one', async () => {
    const never = path.join(tmpdir(), `never-${process.pid}.gguf`);
    // Phi-3: llama.cpp takes head_dim as hidden / heads; no q/k/v bias.
    const phi3 = await readGguf(path.join(FIXTURES_DIR, 'tiny-phi3.gguf'));
    await expect(writeGguf(never, { spec: { ...phi3.spec, attentionBias: true }, weights: phi3.servingWeights })).rejects.toThrow(/as phi3 this model also needs attentionBias \(phi3 has none\)$/);
    await expect(writeGguf(never, { spec: { ...phi3.spec, numHeads: 2, numKvHeads: 1 }, weights: phi3.servingWeights })).rejects.toThrow(/as phi3 this model also needs headDim 16 \(llama\.cpp's phi3: hidden \/ heads = 32\)$/);
    // Qwen3 with a q/k/v bias, SmolLM3 with NoPE layers other than llama.cpp's every 4th.
    const qwen3 = await readGguf(path.join(FIXTURES_DIR, 'tiny-qwen3.gguf'));
    await expect(writeGguf(never, { spec: { ...qwen3.spec, attentionBias: true }, weights: qwen3.servingWeights })).rejects.toThrow(/as qwen3 this model also needs attentionBias \(qwen3 has none\)$/);
    const smollm3 = await readGguf(path.join(FIXTURES_DIR, 'tiny-smollm3.gguf'));
    await expect(writeGguf(never, { spec: { ...smollm3.spec, noRopeLayers: [0] }, weights: smollm3.servingWeights })).rejects.toThrow(/noRopeLayers \[0\] \(llama\.cpp: every 4th layer\)$/);
    // llama.cpp converts Mistral as llama and drops its window: refused while the window is shorter than the context.
    const gqa = await readGguf(path.join(FIXTURES_DIR, 'tiny-gqa.gguf'));
    await expect(writeGguf(never, { spec: { ...gqa.spec, slidingWindow: 4 }, weights: gqa.servingWeights })).rejects.toThrow(
      /as llama this model also needs slidingWindow \(llama\.cpp attends to the whole context\)/,
    );
    // Gemma: llama.cpp's fixed query scale, layer pattern, soft caps and tied head.
    const gemma2 = await readGguf(path.join(FIXTURES_DIR, 'tiny-gemma2.gguf'));
    const gemma3 = await readGguf(path.join(FIXTURES_DIR, 'tiny-gemma3.gguf'));
    const refused = async (spec: typeof gemma2.spec, weights: ServingWeightMap) =>
      (await writeGguf(never, { spec, weights }).then(() => null, (e: unknown) => (e instanceof Error ? e.message : String(e)))) ?? 'written';
    expect(await refused({ ...gemma2.spec, attnScale: 0.125 }, gemma2.servingWeights)).toMatch(/as gemma2 this model also needs attnScale 0\.125 \(llama\.cpp: 0\.25\)$/);
    expect(await refused({ ...gemma2.spec, slidingLayers: [1, 3] }, gemma2.servingWeights)).toMatch(/slidingLayers \[1,3\] \(llama\.cpp: every 2nd layer full\)/);
    const { finalSoftcap: _, ...uncapped } = gemma2.spec;
    expect(await refused(uncapped, gemma2.servingWeights)).toMatch(/needs no soft caps$/);
    expect(await refused({ ...gemma3.spec, ropeLocalTheta: 20000 }, gemma3.servingWeights)).toMatch(/needs ropeLocalTheta 20000$/);
    expect(await refused({ ...gemma3.spec, finalSoftcap: 30 }, gemma3.servingWeights)).toMatch(/needs soft caps$/);
    const untied = new Map(gemma3.servingWeights).set('lm_head.weight', gemma3.weights.get('model.embed_tokens.weight')!);
    expect(await refused({ ...gemma3.spec, tieWordEmbeddings: false }, untied)).toMatch(/needs an untied head$/);
  });
});
