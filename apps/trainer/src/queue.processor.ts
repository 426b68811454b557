/**
 * What every trainer job worker shares: its own Redis connection (a BullMQ worker blocks on it), one job at a
 * time with the configured lock, a few stalls allowed (a job run again after its trainer died resumes from its
 * checkpoint, so a crash is not a reason to give up), a `stopping` flag set at shutdown so a running job can
 * checkpoint and go back to the queue, job data parsed with its zod schema (invalid data fails for good), and
 * what a training job's result is named and registered as. Subclasses implement process(); no training code here.
 */
import { Logger, type BeforeApplicationShutdown, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import IORedis from 'ioredis';
import type { z } from 'zod';
import { modelVersionNameSchema, type QueueName, type TrainingDataSource } from '@flywheel/contracts';
import type { CandidateToRegister } from '@flywheel/store';
import type { TrainerConfig } from '@flywheel/config';

/** The job data, or an UnrecoverableError naming every invalid field. */
export function parseJobData<S extends z.ZodType>(schema: S, data: unknown, queue: string): z.infer<S> {
  const parsed = schema.safeParse(data);
  if (!parsed.success) throw new UnrecoverableError(`invalid ${queue} job data: ${parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`);
  return parsed.data;
}

export abstract class QueueProcessor<R> implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  protected readonly logger: Logger;
  private worker: Worker | null = null;
  private connection: IORedis | null = null;
  /** Set at shutdown: a resumable job checkpoints at its next step and goes back to the queue. */
  protected stopping = false;

  protected constructor(
    protected readonly config: TrainerConfig,
    private readonly queue: QueueName,
    /** Close without waiting for the running job (a job that only waits on others, like a loop run). */
    private readonly forceClose = false,
  ) {
    this.logger = new Logger(queue);
  }

  abstract process(job: Job, token?: string): Promise<R>;

  onApplicationBootstrap(): void {
    this.connection = new IORedis(this.config.redis.url, { maxRetriesPerRequest: null });
    this.connection.on('error', (err: Error) => this.logger.warn(`redis: ${err.message}`));
    this.worker = new Worker(this.queue, (job, token) => this.process(job, token), {
      connection: this.connection,
      prefix: this.config.trainer.queuePrefix,
      concurrency: 1,
      lockDuration: this.config.trainer.lockMs,
      stalledInterval: this.config.trainer.lockMs,
      maxStalledCount: 5,
    });
    this.worker.on('failed', (job, err) => this.logger.error(`job ${job?.id ?? '?'} failed: ${err.message}`));
    this.worker.on('error', (err) => this.logger.warn(`worker: ${err.message}`));
  }

  async beforeApplicationShutdown(): Promise<void> {
    // Closing here, not in onApplicationShutdown: once the running job is back in the queue the worker must not
    // fetch it again while the other modules shut down. close() waits for that job, which stops at its next step.
    this.stopping = true;
    await this.worker?.close(this.forceClose);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.connection?.quit().catch(() => undefined);
  }
}

/**
 * The version / run id of a training job: its outName, else `<kind>-<job id>-<job creation time, base 36>` (job ids
 * restart when Redis is emptied; published versions never change, so a name must never come back). A job restarted
 * under the same id keeps its name and so its checkpoint folder. A name that cannot be a version fails the job for
 * good before it trains.
 */
export function jobVersionId(kind: string, job: Pick<Job, 'id' | 'timestamp'>, outName: string | undefined): string {
  const id = outName ?? `${kind}-${job.id ?? '?'}-${job.timestamp.toString(36)}`;
  const ok = modelVersionNameSchema.safeParse(id);
  if (!ok.success) throw new UnrecoverableError(`cannot publish ${JSON.stringify(id)} as a version: ${ok.error.issues.map((i) => i.message).join('; ')}`);
  return id;
}

/** What a finished training job registers: its run (succeeded) and a candidate version of `role`, both named `id`. */
export function candidateOf<R extends CandidateToRegister['role']>(o: {
  id: string;
  role: R;
  kind: CandidateToRegister['trainingRun']['kind'];
  source: TrainingDataSource;
  config: Record<string, unknown>;
  startedAt: Date;
  checkpoint: string;
  metrics: Record<string, unknown>;
  baseVersion?: string | null;
}): CandidateToRegister & { role: R } {
  return {
    versionId: o.id,
    role: o.role,
    trainingRun: {
      id: o.id,
      kind: o.kind,
      baseVersion: o.baseVersion ?? null,
      exportId: o.source.kind === 'export' ? o.source.exportId : null,
      config: o.config,
      startedAt: o.startedAt,
      finishedAt: new Date(),
    },
    checkpoint: o.checkpoint,
    metrics: o.metrics,
  };
}
