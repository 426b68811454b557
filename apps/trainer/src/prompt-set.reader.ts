/**
 * The prompts a policy job (ppo, grpo) trains on: read from its source (an export or JSONL file), each with the
 * reference columns its line carried, split seeded into train and held-out exactly as splitPrompts splits the prompts
 * alone (the eval stage gets the held-out ones). A source that cannot be read as prompts fails the job for good.
 */
import { UnrecoverableError } from 'bullmq';
import type { RewardReference, TrainingDataSource } from '@flywheel/contracts';
import { parsePromptSet, splitPrompts, type Prompt } from '@flywheel/rl';
import type { TrainerStore } from './trainer.store';

export interface JobPrompts {
  train: Prompt[];
  heldout: Prompt[];
  /** Reference columns of the train prompts, index for index. */
  references: Array<RewardReference | undefined>;
}

export async function readJobPrompts(store: TrainerStore, source: TrainingDataSource, heldout: number, seed: number): Promise<JobPrompts> {
  try {
    const set = parsePromptSet(await store.trainingText(source, null), source.kind === 'export' ? `export ${source.exportId}` : source.path);
    const split = splitPrompts(set.prompts.map((p, i) => ({ p, r: set.references[i] })), heldout, seed);
    return { train: split.train.map((x) => x.p), heldout: split.heldout.map((x) => x.p), references: split.train.map((x) => x.r) };
  } catch (err) {
    throw err instanceof UnrecoverableError ? err : new UnrecoverableError(err instanceof Error ? err.message : String(err));
  }
}
