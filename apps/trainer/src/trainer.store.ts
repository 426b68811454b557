/**
 * The trainer's handle on the flywheel store (DATABASE_URL: a Postgres server, or the embedded one the launcher
 * runs): one pool, opened on first use and kept (run series are written every few seconds and the admin UI polls
 * the loop status). Not a query layer: callers pass @flywheel/store functions; `trainingText` is the one read
 * every training job shares.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Inject, Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import { UnrecoverableError } from 'bullmq';
import type { Kysely } from 'kysely';
import type { TrainingDataSource } from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { findExport, NO_DATABASE_URL, openStore, type Store, type StoreTables } from '@flywheel/store';
import { TRAINER_CONFIG } from './trainer.queues';

@Injectable()
export class TrainerStore implements OnApplicationShutdown {
  private readonly logger = new Logger('trainer-store');
  /** The kept store; a failed open is retried on the next use. */
  private shared: Promise<Store> | null = null;

  constructor(@Inject(TRAINER_CONFIG) private readonly config: TrainerConfig) {}

  private open(): Promise<Store> {
    const url = this.config.database.url;
    if (url === null) {
      return Promise.reject(new Error(NO_DATABASE_URL));
    }
    return openStore({ url }, { onIdleError: (err) => this.logger.warn(`store: ${err.message}`) });
  }

  async use<T>(fn: (db: Kysely<StoreTables>) => Promise<T>): Promise<T> {
    this.shared ??= this.open().catch((err: unknown) => {
      this.shared = null;
      throw err;
    });
    return fn((await this.shared).db);
  }

  async onApplicationShutdown(): Promise<void> {
    const shared = this.shared;
    this.shared = null;
    if (shared) await (await shared.catch(() => null))?.close();
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
