/**
 * The trainer's handle on the flywheel store (DATABASE_URL, else the embedded PGlite under the state folder),
 * opened for each use and closed after: the embedded store is one process's at a time, so the trainer holds it
 * only while reading an export or registering a model version. Not a query layer: callers pass @flywheel/store
 * functions; `trainingText` is the one read every training job shares.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { UnrecoverableError } from 'bullmq';
import type { Kysely } from 'kysely';
import type { TrainingDataSource } from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { findExport, openStore, storeTargetOf, type StoreTables } from '@flywheel/store';
import { TRAINER_CONFIG } from './trainer.queues';

@Injectable()
export class TrainerStore {
  private readonly logger = new Logger('trainer-store');

  constructor(@Inject(TRAINER_CONFIG) private readonly config: TrainerConfig) {}

  async use<T>(fn: (db: Kysely<StoreTables>) => Promise<T>): Promise<T> {
    const store = await openStore(storeTargetOf(this.config.database.url, this.config.stateDir), {
      onIdleError: (err) => this.logger.warn(`store: ${err.message}`),
    });
    try {
      return await fn(store.db);
    } finally {
      await store.close();
    }
  }

  /**
   * A job's JSONL: the file, or the stored export, which must be of `format` when given (a missing or wrong one
   * fails the job for good; prompts for RL may come from any format).
   */
  async trainingText(src: TrainingDataSource, format: string | null): Promise<string> {
    if (src.kind === 'jsonl') return readFile(path.resolve(src.path), 'utf8');
    const row = await this.use((db) => findExport(db, src.exportId));
    if (!row) throw new UnrecoverableError(`export ${src.exportId} not found in the store`);
    if (format !== null && row.format !== format) throw new UnrecoverableError(`export ${src.exportId} is a ${row.format} export, not ${format}`);
    return row.content;
  }
}
