/**
 * The production StepRunner: one native model plus one paged KV cache from @flywheel/kernels, and the
 * TokenDecoder over the checkpoint's tokenizer. Thin adapters only; argument checks live in libs/kernels,
 * scheduling in the engine.
 */
import {
  copyBlocks,
  createKvCache,
  createModel,
  createModelAsync,
  forward,
  freeCache,
  freeModel,
  kvCacheInfo,
  everyLayerWindow,
  modelInfo,
  type KvCacheHandle,
  type KvDtype,
  type ModelHandle,
  type ModelSpec,
  type ServedDtype,
  type ServingWeightMap,
  type WeightDtype,
} from '@flywheel/kernels';
import type { StepBatch, StepRunner, TokenDecoder } from './engine.types';

export interface NativeRunnerOptions {
  numBlocks: number;
  blockSize: number;
  /** 'auto': keep each quantized tensor's own type; a mix ('q4_k_m'): llama.cpp's type per matrix (see createModel). */
  dtype: ServedDtype | 'auto';
  /** K/V storage (default f32). */
  kvDtype?: KvDtype;
  /** Native threads; default: all hardware cores. */
  threads?: number;
}

export class NativeStepRunner implements StepRunner {
  readonly vocabSize: number;
  readonly attentionWindow?: number;
  private readonly model: ModelHandle;
  private readonly cache: KvCacheHandle;

  /**
   * `weights` may hold GGML blocks (a GGUF file's); the model stores them per `options.dtype` (see createModel). Or the
   * model already made from them (`create`).
   */
  constructor(spec: ModelSpec, weights: ServingWeightMap | { model: ModelHandle }, options: NativeRunnerOptions) {
    this.vocabSize = spec.vocabSize;
    // Only when every layer slides: one full-attention layer (Gemma's) needs every block.
    this.attentionWindow = everyLayerWindow(spec) ?? undefined;
    this.model = 'model' in weights ? weights.model : createModel(spec, weights, { dtype: options.dtype, threads: options.threads });
    try {
      this.cache = createKvCache(this.model, options.numBlocks, options.blockSize, options.kvDtype ?? 'f32');
    } catch (error) {
      freeModel(this.model);
      throw error;
    }
  }

  /** The runner with its model packed off the JavaScript thread (createModelAsync): a hot swap keeps serving meanwhile. */
  static async create(spec: ModelSpec, weights: ServingWeightMap, options: NativeRunnerOptions): Promise<NativeStepRunner> {
    const model = await createModelAsync(spec, weights, { dtype: options.dtype, threads: options.threads });
    return new NativeStepRunner(spec, { model }, options);
  }

  /** The served dtype and the matrices per stored type. */
  info(): { dtype: ServedDtype; weightTypes: Partial<Record<WeightDtype, number>>; matmulWeightBytes: number; kvDtype: KvDtype; kvBytesPerToken: number } {
    const { dtype, weightTypes, matmulWeightBytes } = modelInfo(this.model);
    const kv = kvCacheInfo(this.cache);
    return { dtype, weightTypes, matmulWeightBytes, kvDtype: kv.dtype, kvBytesPerToken: kv.bytesPerToken };
  }

  run(batch: StepBatch): Promise<Float32Array> {
    return forward(this.model, this.cache, batch);
  }

  async copyBlocks(src: readonly number[], dst: readonly number[]): Promise<void> {
    copyBlocks(this.cache, src, dst);
  }

  /** Frees native memory; call only once the engine is closed (no step in flight). */
  dispose(): void {
    freeCache(this.cache);
    freeModel(this.model);
  }
}

/** What the engine needs of the loading lib's tokenizer (ModelTokenizer satisfies it). */
export interface DecodingTokenizer {
  decode(ids: readonly number[], options?: { skipSpecialTokens?: boolean }): string;
  idToToken(id: number): string | null;
}

const BYTE_PIECE = /^<0x[0-9A-Fa-f]{2}>$/;

/** Special tokens skipped unless asked otherwise; logprob token texts as OpenAI shows them (SentencePiece '▁' → ' '). */
export function tokenizerDecoder(tokenizer: DecodingTokenizer): TokenDecoder {
  return {
    decode: (ids, options) => tokenizer.decode(ids, { skipSpecialTokens: options?.skipSpecialTokens ?? true }),
    tokenText: (id) => {
      const piece = tokenizer.idToToken(id);
      if (piece === null || BYTE_PIECE.test(piece)) return tokenizer.decode([id], { skipSpecialTokens: false });
      return piece.replace(/▁/g, ' ');
    },
  };
}
