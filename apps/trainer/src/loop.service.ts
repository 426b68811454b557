/**
 * The RL loop's control: paused or not (a Redis key, so it survives restarts and is shared by trainer replicas),
 * the status the admin UI shows (running run and stage, approved pairs since the last run against the threshold,
 * last run), starting a run (by hand, or by the trigger when enough newly approved preference pairs accumulated
 * or the schedule is due and anything new exists), which exports the store's approved pairs and enqueues a
 * `loop` job. Not the run itself (loop.processor.ts) nor the NATS handler (loop.controller.ts).
 */
import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import type { Job } from 'bullmq';
import { loopJobDataSchema, QUEUES, type LoopJobDataInput, type LoopStartRequest, type LoopStatus, type TrainingDataSource } from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { countApprovedSince, createExport, listTrainingRuns } from '@flywheel/store';
import { loopRunId } from './loop.processor';
import { TRAINER_CONFIG, TrainerQueues } from './trainer.queues';
import { TrainerStore } from './trainer.store';

@Injectable()
export class LoopService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('loop-control');
  private timer: NodeJS.Timeout | null = null;
  private checking = false;

  constructor(
    @Inject(TRAINER_CONFIG) private readonly config: TrainerConfig,
    private readonly queues: TrainerQueues,
    private readonly store: TrainerStore,
  ) {}

  onApplicationBootstrap(): void {
    if (this.config.loop.minNewApproved === 0 && this.config.loop.scheduleMs === 0) {
      this.logger.log('loop triggers off (FLYWHEEL_LOOP_MIN_NEW_APPROVED=0, no schedule): runs start by hand');
      return;
    }
    this.timer = setInterval(() => void this.tick(), this.config.loop.checkMs);
    this.timer.unref();
  }

  onApplicationShutdown(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private get pausedKey(): string {
    return `${this.config.trainer.queuePrefix}:flywheel:loop:paused`;
  }

  private get loopQueue() {
    const q = this.queues.queues.get(QUEUES.loop);
    if (!q) throw new Error('no loop queue');
    return q;
  }

  async setPaused(paused: boolean): Promise<void> {
    const redis = this.queues.redis;
    if (paused) await redis.set(this.pausedKey, '1');
    else await redis.del(this.pausedKey);
  }

  async isPaused(): Promise<boolean> {
    const redis = this.queues.redis;
    return (await redis.get(this.pausedKey)) === '1';
  }

  private async current(): Promise<Job | null> {
    const [job] = await this.loopQueue.getJobs(['active', 'waiting', 'delayed', 'prioritized'], 0, 0, true);
    return job ?? null;
  }

  async status(message?: string): Promise<LoopStatus> {
    const [paused, job] = await Promise.all([this.isPaused(), this.current()]);
    // The store may be out of reach (the embedded one is the gateway's while it runs): the status still answers,
    // with what Redis knows, and says why the counts are missing.
    const { last, approved, storeError } = await this.store
      .use(async (db) => {
        const [lastRun] = await listTrainingRuns(db, { kind: 'loop', parentRunId: null, limit: 1 });
        return { last: lastRun ?? null, approved: await countApprovedSince(db, 'preference', lastRun ? new Date(lastRun.createdAt) : null), storeError: null };
      })
      .catch((err: unknown) => ({ last: null, approved: 0, storeError: `store unavailable: ${err instanceof Error ? err.message : String(err)}` }));
    message = [message, storeError].filter((m): m is string => typeof m === 'string' && m.length > 0).join('; ') || undefined;
    const progress = job?.progress as { stage?: unknown } | undefined;
    return {
      paused,
      running: job
        ? { runId: loopRunId(job), stage: typeof progress?.stage === 'string' ? progress.stage : 'queued', startedAt: new Date(job.processedOn ?? job.timestamp).toISOString() }
        : null,
      approvedSinceLastRun: approved,
      minNewApproved: this.config.loop.minNewApproved,
      scheduleMs: this.config.loop.scheduleMs > 0 ? this.config.loop.scheduleMs : null,
      lastRun: last ? { runId: last.id, status: last.status, finishedAt: last.finishedAt } : null,
      ...(message ? { message } : {}),
    };
  }

  /**
   * One loop run now: on `request`'s data (CLI, demo) or on a fresh preference export of the store's approved pairs.
   * Refused (with the reason in the status message) while a run is queued or running, or with nothing to train on.
   */
  async start(trigger: 'manual' | 'threshold' | 'schedule', request?: Omit<LoopStartRequest, 'action'>): Promise<LoopStatus> {
    const running = await this.current();
    if (running) return this.status(`${loopRunId(running)} is already ${await running.getState()}`);
    let data: TrainingDataSource;
    if (request) {
      data = request.data;
    } else {
      let exp;
      try {
        exp = await this.store.use((db) => createExport(db, { format: 'preference', filters: {}, filtersRecord: { by: 'trainer-loop', trigger }, createdBy: 'trainer-loop' }));
      } catch (err) {
        return this.status(`cannot export the approved pairs: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (exp.row_count === 0) return this.status('no approved preference pairs to train on yet');
      data = { kind: 'export', exportId: exp.id };
    }
    const input: LoopJobDataInput = { ...(request?.overrides ?? {}), data, trigger };
    const jobData = loopJobDataSchema.parse(input);
    const job = await this.loopQueue.add(QUEUES.loop, jobData);
    this.logger.log(`${loopRunId(job)} queued (${trigger}) on ${data.kind === 'export' ? `export ${data.exportId}` : data.path}`);
    return this.status(`${loopRunId(job)} queued`);
  }

  /** The trigger: enough newly approved pairs, or the schedule with anything new. */
  async tick(): Promise<void> {
    if (this.checking) return;
    this.checking = true;
    try {
      if (await this.isPaused()) return;
      const s = await this.status();
      if (s.running) return;
      const { minNewApproved, scheduleMs } = this.config.loop;
      if (minNewApproved > 0 && s.approvedSinceLastRun >= minNewApproved) {
        await this.start('threshold');
        return;
      }
      const lastAt = s.lastRun?.finishedAt ? Date.parse(s.lastRun.finishedAt) : 0;
      if (scheduleMs > 0 && s.approvedSinceLastRun > 0 && Date.now() - lastAt >= scheduleMs) await this.start('schedule');
    } catch (err) {
      this.logger.warn(`loop trigger check failed: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      this.checking = false;
    }
  }
}
