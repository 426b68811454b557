/**
 * Builds a serving Engine from a loaded checkpoint over the native kernels: the one place the real runner,
 * tokenizer decoder and generation-config stop ids are wired together. No env reading: the policy app passes
 * its parsed config in.
 */
import { isQuantType } from '@flywheel/kernels';
import type { KvDtype, ServedDtype, WeightDtype } from '@flywheel/kernels';
import type { Checkpoint, SourceDtype } from '../loading';
import { Engine, type EngineConfigInput } from './engine';
import type { EngineObserver } from './engine.types';
import { NativeStepRunner, tokenizerDecoder } from './native-runner';

/**
 * Weight storage asked for: a dtype, or 'auto' (the default) = as the checkpoint comes where the engine keeps that
 * type natively: a quantized GGUF keeps every tensor in its own type (a Q4_K_M file stays Q4_K + Q6_K), everything
 * else is f32 (bf16/f16 checkpoints are widened, as before).
 */
export type EngineDtypeChoice = ServedDtype | 'auto';

/** What createModel is asked for: 'auto' only where the checkpoint is quantized (keep its tensors' types). */
export function resolveEngineDtype(choice: EngineDtypeChoice, sourceDtype: SourceDtype | undefined): ServedDtype | 'auto' {
  if (choice !== 'auto') return choice;
  return isQuantType(sourceDtype) ? 'auto' : 'f32';
}

export interface NativeEngineOptions {
  numBlocks: number;
  blockSize?: number;
  dtype?: EngineDtypeChoice;
  /** K/V cache storage; default f32 here (the policy service's FLYWHEEL_KV_DTYPE decides for serving). */
  kvDtype?: KvDtype;
  threads?: number;
  /** Defaults to the model's max_position_embeddings. */
  maxModelLen?: number;
  engine?: Omit<EngineConfigInput, 'numBlocks' | 'blockSize' | 'maxModelLen' | 'eosTokenIds'>;
  observer?: EngineObserver;
}

export interface NativeEngine {
  engine: Engine;
  /** The weight dtype actually served ('auto' resolved: the type most matrices are stored in; a mix by its name). */
  dtype: ServedDtype;
  /** Matrices per stored type (a GGUF's mix, e.g. { q4_k: 9, q6_k: 3 }). */
  weightTypes: Partial<Record<WeightDtype, number>>;
  /** Bytes of weight matrices one decode step streams (as stored). */
  matmulWeightBytes: number;
  kvDtype: KvDtype;
  /** Bytes one token's K and V take over all layers. */
  kvBytesPerToken: number;
  /** Aborts every request, waits for the step in flight, then frees native memory. */
  close(): Promise<void>;
}

/** What the factory reads of a checkpoint; servingWeights and sourceDtype come with every loaded one. */
export type ServableCheckpoint = Pick<Checkpoint, 'spec' | 'weights' | 'tokenizer' | 'generation'> &
  Partial<Pick<Checkpoint, 'servingWeights' | 'sourceDtype'>>;

export function createNativeEngine(checkpoint: ServableCheckpoint, options: NativeEngineOptions): NativeEngine {
  const runner = runnerOptions(checkpoint, options);
  return engineOver(new NativeStepRunner(checkpoint.spec, weightsOf(checkpoint), runner), runner.blockSize, checkpoint, options);
}

/**
 * createNativeEngine with the model packed on a worker thread (NativeStepRunner.create): what a policy loading a new
 * version beside the serving one uses, so the serving engine keeps stepping while the weights are copied.
 */
export async function createNativeEngineAsync(checkpoint: ServableCheckpoint, options: NativeEngineOptions): Promise<NativeEngine> {
  const runner = runnerOptions(checkpoint, options);
  return engineOver(await NativeStepRunner.create(checkpoint.spec, weightsOf(checkpoint), runner), runner.blockSize, checkpoint, options);
}

/** Tokens per KV block when the options name none. */
const DEFAULT_BLOCK_SIZE = 16;

/** servingWeights keeps a GGUF's blocks as they are: the model copies them ('auto', or the same type), converts or widens them in C++. */
const weightsOf = (checkpoint: ServableCheckpoint) => checkpoint.servingWeights ?? checkpoint.weights;

function runnerOptions(checkpoint: ServableCheckpoint, options: NativeEngineOptions) {
  return {
    numBlocks: options.numBlocks,
    blockSize: options.blockSize ?? DEFAULT_BLOCK_SIZE,
    dtype: resolveEngineDtype(options.dtype ?? 'auto', checkpoint.sourceDtype),
    kvDtype: options.kvDtype,
    threads: options.threads,
  };
}

function engineOver(runner: NativeStepRunner, blockSize: number, checkpoint: ServableCheckpoint, options: NativeEngineOptions): NativeEngine {
  const { dtype, weightTypes, matmulWeightBytes, kvDtype, kvBytesPerToken } = runner.info();
  const engine = new Engine({
    runner,
    decoder: tokenizerDecoder(checkpoint.tokenizer),
    observer: options.observer,
    config: {
      ...options.engine,
      numBlocks: options.numBlocks,
      blockSize,
      maxModelLen: options.maxModelLen ?? checkpoint.spec.maxPositionEmbeddings,
      eosTokenIds: checkpoint.generation.eosTokenIds,
    },
  });
  return {
    engine,
    dtype,
    weightTypes,
    matmulWeightBytes,
    kvDtype,
    kvBytesPerToken,
    close: async () => {
      await engine.close();
      runner.dispose();
    },
  };
}
