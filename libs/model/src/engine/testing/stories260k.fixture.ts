/**
 * Loads Karpathy's stories260K (Hugging Face layout, committed at models/stories260K) for engine specs without
 * the loading lib: a strict little safetensors reader (F32 only), the spec from config.json, and a decoder from
 * tokenizer.json. Test-only; production loading lives in libs/model/src/loading.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LlamaSpec } from '../reference-runner';
import { VocabDecoder } from './vocab-decoder.fixture';

export const STORIES_PROMPT_IDS = [1, 403, 407, 261, 378];
export const STORIES_GOLDEN_IDS = (
  '432 383 286 261 376 298 315 421 395 317 426 338 401 396 267 337 410 408 419 292 411 322 265 282 295 433 426 385 ' +
  '328 432 358 394 261 370 432 352 266 268 388 426 338 391 266 267 337 335 312 432 398 312 286 267 414 270 333 415 426 13 438 310 439 419 357 336'
)
  .split(' ')
  .map(Number);
export const STORIES_STOP_IDS = [1, 2];

export function readSafetensorsF32(path: string): Map<string, Float32Array> {
  const buf = readFileSync(path);
  const headerLen = Number(buf.readBigUInt64LE(0));
  const header: unknown = JSON.parse(buf.subarray(8, 8 + headerLen).toString('utf8'));
  if (typeof header !== 'object' || header === null) throw new Error('bad safetensors header');
  const dataStart = 8 + headerLen;
  const out = new Map<string, Float32Array>();
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, data_offsets: offsets } = entry as { dtype: string; data_offsets: [number, number] };
    if (dtype !== 'F32') throw new Error(`${name}: dtype ${dtype} not supported by the test reader`);
    const bytes = buf.subarray(dataStart + offsets[0], dataStart + offsets[1]);
    // Copy so the array is 4-byte aligned regardless of the header length.
    const arr = new Float32Array(bytes.length / 4);
    new Uint8Array(arr.buffer).set(bytes);
    out.set(name, arr);
  }
  return out;
}

export interface StoriesModel {
  spec: LlamaSpec & { maxPositionEmbeddings: number };
  weights: Map<string, Float32Array>;
  decoder: VocabDecoder;
}

export function loadStories(dir: string): StoriesModel {
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, number | boolean | null>;
  const num = (key: string): number => {
    const v = cfg[key];
    if (typeof v !== 'number') throw new Error(`config.json: ${key} missing`);
    return v;
  };
  const spec = {
    vocabSize: num('vocab_size'),
    hiddenSize: num('hidden_size'),
    intermediateSize: num('intermediate_size'),
    numLayers: num('num_hidden_layers'),
    numHeads: num('num_attention_heads'),
    numKvHeads: num('num_key_value_heads'),
    headDim: num('head_dim'),
    rmsNormEps: num('rms_norm_eps'),
    ropeTheta: num('rope_theta'),
    ropeScaling: null,
    tieWordEmbeddings: cfg['tie_word_embeddings'] === true,
    attentionBias: cfg['attention_bias'] === true,
    maxPositionEmbeddings: num('max_position_embeddings'),
  };
  const tok = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as {
    model: { vocab: Record<string, number> };
    added_tokens: { id: number; special: boolean }[];
  };
  const pieces: string[] = [];
  for (const [piece, id] of Object.entries(tok.model.vocab)) pieces[id] = piece;
  const special = new Set(tok.added_tokens.filter((t) => t.special).map((t) => t.id));
  return { spec, weights: readSafetensorsF32(join(dir, 'model.safetensors')), decoder: new VocabDecoder(pieces, special) };
}
