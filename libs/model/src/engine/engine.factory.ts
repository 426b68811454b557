/**
 * Builds a serving Engine from a loaded checkpoint over the native kernels: the one place the real runner,
 * tokenizer decoder and generation-config stop ids are wired together. No env reading: the policy app passes
 * its parsed config in.
 */
import type { WeightDtype } from '@flywheel/kernels';
import type { Checkpoint, SourceDtype } from '../loading';
import { Engine, type EngineConfigInput } from './engine';
import type { EngineObserver } from './engine.types';
import { NativeStepRunner, tokenizerDecoder } from './native-runner';

/**
 * Weight storage asked for: a dtype, or 'auto' (the default) = as the checkpoint comes where the engine keeps that
 * type natively: Q8_0 for a Q8_0 GGUF, f32 for everything else (bf16/f16 checkpoints are widened, as before).
 */
export type EngineDtypeChoice = WeightDtype | 'auto';

export function resolveEngineDtype(choice: EngineDtypeChoice, sourceDtype: SourceDtype | undefined): WeightDtype {
  if (choice !== 'auto') return choice;
  return sourceDtype === 'q8_0' ? 'q8_0' : 'f32';
}

export interface NativeEngineOptions {
  numBlocks: number;
  blockSize?: number;
  dtype?: EngineDtypeChoice;
  threads?: number;
  /** Defaults to the model's max_position_embeddings. */
  maxModelLen?: number;
  engine?: Omit<EngineConfigInput, 'numBlocks' | 'blockSize' | 'maxModelLen' | 'eosTokenIds'>;
  observer?: EngineObserver;
}

export interface NativeEngine {
  engine: Engine;
  /** The weight dtype actually served ('auto' resolved). */
  dtype: WeightDtype;
  /** Aborts every request, waits for the step in flight, then frees native memory. */
  close(): Promise<void>;
}

/** What the factory reads of a checkpoint; servingWeights and sourceDtype come with every loaded one. */
export type ServableCheckpoint = Pick<Checkpoint, 'spec' | 'weights' | 'tokenizer' | 'generation'> &
  Partial<Pick<Checkpoint, 'servingWeights' | 'sourceDtype'>>;

export function createNativeEngine(checkpoint: ServableCheckpoint, options: NativeEngineOptions): NativeEngine {
  const blockSize = options.blockSize ?? 16;
  const dtype = resolveEngineDtype(options.dtype ?? 'auto', checkpoint.sourceDtype);
  // servingWeights keeps a GGUF's Q8_0 blocks as they are: the model copies them (q8_0) or widens them in C++.
  const runner = new NativeStepRunner(checkpoint.spec, checkpoint.servingWeights ?? checkpoint.weights, {
    numBlocks: options.numBlocks,
    blockSize,
    dtype,
    threads: options.threads,
  });
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
    close: async () => {
      await engine.close();
      runner.dispose();
    },
  };
}
