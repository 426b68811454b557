/**
 * What every trainer job worker shares, and the one lifecycle every training job follows. QueueProcessor: its own
 * Redis connection (a BullMQ worker blocks on it), one job at a time with the configured lock, a few stalls allowed
 * (a job run again after its trainer died resumes from its checkpoint, so a crash is not a reason to give up), a
 * `stopping` flag set at shutdown, and job data parsed with the queue's zod schema before handle() sees it (invalid
 * data fails for good). TrainingJobProcessor: parse → run record → train → at shutdown, checkpoint and go back to
 * the queue → register → publish; each job (sft, reward-train, dpo, kto, ppo, grpo, moderation-train) only prepares
 * and runs its training, the resumable ones with the same resume hooks.
 */
import path from 'node:path';
import { Logger, type BeforeApplicationShutdown, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { UnrecoverableError, WaitingError, Worker, type Job } from 'bullmq';
import IORedis from 'ioredis';
import type { z } from 'zod';
import { modelVersionNameSchema, type ModelRole, type QueueName, type TrainingDataSource } from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import type { MeshConnection } from '@flywheel/mesh';
import type { CandidateToRegister } from '@flywheel/store';
import { TrainingStoppedError } from '@flywheel/train';
import { registerAndPublish } from './checkpoint.publisher';
import { RunRecorder } from './run.recorder';
import type { TrainerStore } from './trainer.store';

/** The job data, or an UnrecoverableError naming every invalid field. */
export function parseJobData<S extends z.ZodType>(schema: S, data: unknown, queue: string): z.infer<S> {
  const parsed = schema.safeParse(data);
  if (!parsed.success) throw new UnrecoverableError(`invalid ${queue} job data: ${parsed.error.issues.map((i) => `${i.path.join('.')} ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** What a worker uses of a BullMQ job (a plain object in tests; moveToWait is only needed to requeue at shutdown). */
export type QueueJob = Pick<Job, 'id' | 'data' | 'updateProgress' | 'timestamp'> & Partial<Pick<Job, 'moveToWait'>>;

export abstract class QueueProcessor<D, R> implements OnApplicationBootstrap, BeforeApplicationShutdown, OnApplicationShutdown {
  protected readonly logger: Logger;
  private worker: Worker | null = null;
  private connection: IORedis | null = null;
  /** Set at shutdown: a resumable job checkpoints at its next step and goes back to the queue. */
  protected stopping = false;

  protected constructor(
    protected readonly config: TrainerConfig,
    protected readonly queue: QueueName,
    private readonly schema: z.ZodType<D>,
    /** Close without waiting for the running job (a job that only waits on others, like a loop run). */
    private readonly forceClose = false,
  ) {
    this.logger = new Logger(queue);
  }

  /** The worker's entry: the job's data parsed with the queue's schema, then handle(). */
  async process(job: QueueJob, token?: string): Promise<R> {
    return this.handle(job, parseJobData(this.schema, job.data, this.queue), token);
  }

  protected abstract handle(job: QueueJob, data: D, token?: string): Promise<R>;

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

/** Where a training job writes: its version / run id (jobVersionId) and `<state dir>/checkpoints/<id>`. */
export interface TrainingTarget {
  jobId: string;
  id: string;
  outDir: string;
}

/** A training job ready to run, made from its data (read, base version found) before its run is recorded. */
export interface PreparedTraining<T, R> {
  /** The run row's lineage fields; its kind is the processor's and its config the job's data. */
  run: { baseVersion?: string | null; parentRunId?: string | null; exportId?: string | null };
  /** Trains into the target's outDir, each step reported to `recorder`; throws the trainer's stop error when stopping. */
  train(recorder: RunRecorder): Promise<T>;
  /** What the trained checkpoint is registered and published as, and what the job answers. */
  finish(trained: T): Promise<TrainedCandidate<R>>;
}

export interface TrainedCandidate<R> {
  role: ModelRole;
  source: TrainingDataSource;
  metrics: Record<string, unknown>;
  /** The run's base version (the published version it was trained from, when known). */
  baseVersion?: string | null;
  lineage: { parent: string | null; exports: string[] };
  result: R;
  /** The job's last log line, after `job <id>: `. */
  summary: string;
  /** Runs once the candidate is registered and published (a job that judges and promotes its own candidate). */
  afterPublish?: () => Promise<void>;
}

/** Which training a processor runs: its queue and data schema, its run kind, and the prefix of its versions' names. */
export interface TrainingJobKind<D> {
  queue: QueueName;
  schema: z.ZodType<D>;
  kind: CandidateToRegister['trainingRun']['kind'];
  versionPrefix: string;
}

/** A metric for the run's summary: JSON has no NaN or Infinity, so a value that is not finite is null. */
export const finiteOrNull = (x: number): number | null => (Number.isFinite(x) ? x : null);

/** How a job's data source reads in its logs and trainer (an export, or a file's absolute path), and the exports its lineage records. */
export function sourceOf(data: TrainingDataSource): { source: string; exportIds: string[] } {
  return data.kind === 'export' ? { source: `export ${data.exportId}`, exportIds: [data.exportId] } : { source: path.resolve(data.path), exportIds: [] };
}

/** What every trainer's progress callback carries. */
export interface StepProgress {
  step: number;
  steps: number;
}

export abstract class TrainingJobProcessor<D extends { outName?: string }, T, R> extends QueueProcessor<D, R> {
  protected constructor(
    config: TrainerConfig,
    protected readonly store: TrainerStore,
    protected readonly mesh: MeshConnection,
    private readonly training: TrainingJobKind<D>,
  ) {
    super(config, training.queue, training.schema);
  }

  /** Reads the job's data and finds what it trains from; nothing is recorded yet. */
  protected abstract prepare(job: QueueJob, data: D, target: TrainingTarget): Promise<PreparedTraining<T, R>>;

  /**
   * A trainer's onProgress: each step becomes the job's progress and a point of the run's curves, and about every
   * 5% of the steps (and the last) a log line `job <id>: step n/N <line(p)>`.
   */
  protected progressReporter<P extends StepProgress>(job: QueueJob, recorder: RunRecorder, line: (p: P) => string): (p: P) => Promise<void> {
    const jobId = job.id ?? 'unknown';
    return async (p) => {
      await job.updateProgress(p);
      await recorder.step(p.step, p);
      const every = Math.max(1, Math.floor(p.steps / 20));
      if (p.step % every === 0 || p.step === p.steps) this.logger.log(`job ${jobId}: step ${p.step}/${p.steps} ${line(p)}`);
    };
  }

  /**
   * What every resumable trainer is given: its native threads, resume from the job's own checkpoint folder (logged),
   * a log line per intermediate checkpoint, and a stop at shutdown (the trainer saves, then throws its stop error).
   */
  protected resumeHooks({ jobId, outDir }: TrainingTarget) {
    return {
      threads: this.config.trainer.threads || undefined,
      resume: true,
      onResume: (step: number) => this.logger.log(`job ${jobId}: resuming from step ${step} (${outDir})`),
      onCheckpoint: (step: number) => this.logger.log(`job ${jobId}: checkpoint at step ${step}`),
      shouldStop: () => this.stopping,
    };
  }

  /** The step a training stopped at for shutdown (its checkpoint holds it), or null for any other error. */
  private stoppedAt(err: unknown): number | null {
    return err instanceof TrainingStoppedError ? err.step : null;
  }

  protected async handle(job: QueueJob, data: D, token?: string): Promise<R> {
    const jobId = job.id ?? 'unknown';
    const id = jobVersionId(this.training.versionPrefix, job, data.outName);
    const outDir = path.resolve(this.config.stateDir, 'checkpoints', id);
    const startedAt = new Date();
    const config = { ...data, jobId };
    const prepared = await this.prepare(job, data, { jobId, id, outDir });

    const recorder = new RunRecorder(this.store, id);
    await recorder.start(this.training.kind, { ...prepared.run, config });
    let trained: T;
    try {
      trained = await recorder.track(() => prepared.train(recorder), (err) => this.stoppedAt(err) !== null);
    } catch (err) {
      const step = this.stoppedAt(err);
      if (step === null || !job.moveToWait) throw err;
      this.logger.log(`job ${jobId}: trainer shutting down; stopped at step ${step}, job back in the queue`);
      await job.moveToWait(token);
      throw new WaitingError();
    }

    const done = await prepared.finish(trained);
    await registerAndPublish(
      this.store,
      this.mesh,
      candidateOf({ id, role: done.role, kind: this.training.kind, source: done.source, config, startedAt, checkpoint: outDir, metrics: done.metrics, baseVersion: done.baseVersion }),
      done.lineage,
    );
    await done.afterPublish?.();
    this.logger.log(`job ${jobId}: ${done.summary}`);
    return done.result;
  }
}
