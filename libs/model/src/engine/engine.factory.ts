/**
 * Builds a serving Engine from a loaded checkpoint over the native kernels: the one place the real runner,
 * tokenizer decoder and generation-config stop ids are wired together. No env reading: the policy app passes
 * its parsed config in.
 */
import type { Checkpoint } from '../loading';
import { Engine, type EngineConfigInput } from './engine';
import type { EngineObserver } from './engine.types';
import { NativeStepRunner, tokenizerDecoder } from './native-runner';

export interface NativeEngineOptions {
  numBlocks: number;
  blockSize?: number;
  dtype?: 'f32' | 'bf16';
  threads?: number;
  /** Defaults to the model's max_position_embeddings. */
  maxModelLen?: number;
  engine?: Omit<EngineConfigInput, 'numBlocks' | 'blockSize' | 'maxModelLen' | 'eosTokenIds'>;
  observer?: EngineObserver;
}

export interface NativeEngine {
  engine: Engine;
  /** Aborts every request, waits for the step in flight, then frees native memory. */
  close(): Promise<void>;
}

export function createNativeEngine(checkpoint: Pick<Checkpoint, 'spec' | 'weights' | 'tokenizer' | 'generation'>, options: NativeEngineOptions): NativeEngine {
  const blockSize = options.blockSize ?? 16;
  const runner = new NativeStepRunner(checkpoint.spec, checkpoint.weights, {
    numBlocks: options.numBlocks,
    blockSize,
    dtype: options.dtype ?? 'f32',
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
    close: async () => {
      await engine.close();
      runner.dispose();
    },
  };
}
