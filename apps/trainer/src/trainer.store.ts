/**
 * The trainer's handle on the flywheel store (DATABASE_URL, else the embedded PGlite under the state folder),
 * opened for each use and closed after: the embedded store is one process's at a time, so the trainer holds it
 * only while reading an export or registering a model version. Not a query layer: callers pass @flywheel/store
 * functions.
 */
import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Kysely } from 'kysely';
import type { TrainerConfig } from '@flywheel/config';
import { openStore, storeTargetOf, type StoreTables } from '@flywheel/store';
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
}
