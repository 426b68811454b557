/**
 * The RL loop's control: paused or not (a Redis key, so it survives restarts and is shared by trainer replicas),
 * the status the admin UI shows (running run and stage, approved pairs since the last run against the threshold,
 * last run), starting a run (by hand, or by the trigger when enough newly approved preference pairs accumulated
 * or the schedule is due and anything new exists), which exports the store's approved pairs and enqueues a
 * `loop` job. Not the run itself (loop.processor.ts) nor the NATS handler (loop-control.controller.ts).
 */
import { Inject, Injectable, Logger, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import type { Job } from 'bullmq';
import {
  loopJobDataSchema,
  loopJobProgressSchema,
  loopStageProgressSchema,
  QUEUES,
  type LoopJobDataInput,
  type LoopStartRefusal,
  type LoopStartRequest,
  type LoopStatus,
  type TrainingDataSource,
} from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { parsePrompts } from '@flywheel/rl';
import { buildExportContent, countApprovedSince, countModerationDataSince, createExport, listTrainingRuns } from '@flywheel/store';
import { loopRunId, stageJobOf } from './loop.processor';
import { TRAINER_CONFIG, TrainerQueues } from './trainer.queues';
import { TrainerStore } from './trainer.store';

/** How long the status waits for the store's counts before it answers without them. */
const STORE_STATUS_MS = 2_000;

/**
 * Distinct prompts a loop needs: PPO trains on some and holds at least one out for the eval gate, which refuses a
 * candidate it cannot compare (loop.processor.ts); fewer fails the run at its last stage, after all the training.
 */
export const LOOP_MIN_PROMPTS = 2;

type LoopTrigger = 'manual' | 'threshold' | 'schedule';

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Why a preference export (its JSONL content and line count) is not enough for a loop run; null when it is. */
export function loopDataProblem(content: string, rowCount: number): string | null {
  if (rowCount === 0) return 'no approved preference pairs to train on yet: approve some preference pairs (a chosen and a rejected answer) in Review first';
  let prompts: number;
  try {
    prompts = parsePrompts(content, 'the approved pairs').length;
  } catch (err) {
    return `the approved pairs cannot be read as prompts: ${errorText(err)}`;
  }
  if (prompts >= LOOP_MIN_PROMPTS) return null;
  const pairs = `${rowCount} approved preference pair${rowCount === 1 ? '' : 's'}`;
  return `too few approved preference pairs to train on: ${pairs} on ${prompts} distinct prompt${prompts === 1 ? '' : 's'}; a loop run needs pairs on at least ${LOOP_MIN_PROMPTS} distinct prompts (one is held out for the eval gate)`;
}

/** `p`, or a rejection once `ms` pass without it settling. */
function withinMs<T>(ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

@Injectable()
export class LoopControlService implements OnApplicationBootstrap, OnApplicationShutdown {
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
    // The store may be out of reach: the status still answers, with what Redis knows, and says why the counts are
    // missing; a store that hangs is given up on before the admin API's 3 s wait ends, or the UI would blame the trainer.
    const { last, approved, storeError } = await withinMs(
      STORE_STATUS_MS,
      this.store.use(async (db) => {
        const [lastRun] = await listTrainingRuns(db, { kind: 'loop', parentRunId: null, limit: 1 });
        return { last: lastRun ?? null, approved: await countApprovedSince(db, 'preference', lastRun ? new Date(lastRun.createdAt) : null), storeError: null };
      }),
    ).catch((err: unknown) => ({ last: null, approved: 0, storeError: `store unavailable: ${errorText(err)}` }));
    message = [message, storeError].filter((m): m is string => typeof m === 'string' && m.length > 0).join('; ') || undefined;
    return {
      paused,
      running: job ? await this.running(job) : null,
      approvedSinceLastRun: approved,
      minNewApproved: this.config.loop.minNewApproved,
      scheduleMs: this.config.loop.scheduleMs > 0 ? this.config.loop.scheduleMs : null,
      lastRun: last ? { runId: last.id, status: last.status, finishedAt: last.finishedAt } : null,
      ...(message ? { message } : {}),
    };
  }

  /** The loop job's run, its stage (the job's progress) and, for a stage run as a job, that job's step of steps. */
  private async running(job: Job): Promise<NonNullable<LoopStatus['running']>> {
    const runId = loopRunId(job);
    const at = loopJobProgressSchema.safeParse(job.progress).data;
    const stage = at?.stage ?? 'queued';
    const where = stageJobOf(runId, stage);
    const stageJob = where ? await this.queues.queues.get(where.queue)?.getJob(where.jobId).catch(() => undefined) : undefined;
    const progress = loopStageProgressSchema.safeParse(stageJob?.progress);
    return {
      runId,
      stage,
      startedAt: new Date(job.processedOn ?? job.timestamp).toISOString(),
      ...(progress.success ? { progress: { step: Math.min(progress.data.step, progress.data.steps), steps: progress.data.steps } } : {}),
      ...(at?.message ? { message: at.message } : {}),
    };
  }

  /** The answer to a start that queued nothing: the status, its message the reason. */
  private async refuse(trigger: LoopTrigger, code: LoopStartRefusal['code'], message: string): Promise<LoopStatus> {
    // The trigger asks again at every check: its refusals would fill the log.
    if (trigger === 'manual') this.logger.log(`start refused (${code}): ${message}`);
    else this.logger.debug(`${trigger} start refused (${code}): ${message}`);
    return { ...(await this.status()), message, refused: { code, message } };
  }

  /**
   * One loop run now: on `request`'s data (CLI, demo) or on a fresh preference export of the store's approved pairs.
   * Refused (the status with `refused` and the reason as its message) while a run is queued or running, with nothing
   * to train on, or when the store cannot be read.
   */
  async start(trigger: LoopTrigger, request?: Omit<LoopStartRequest, 'action'>): Promise<LoopStatus> {
    const running = await this.current();
    if (running) return this.refuse(trigger, 'already_running', `${loopRunId(running)} is already ${await running.getState()}`);
    let data: TrainingDataSource;
    if (request) {
      data = request.data;
    } else {
      let exported: { problem: string } | { exportId: string };
      try {
        exported = await this.store.use(async (db) => {
          // Checked before the export is written, so refused starts leave no empty exports behind.
          const { content, rowCount } = await buildExportContent(db, 'preference', {});
          const problem = loopDataProblem(content, rowCount);
          if (problem) return { problem };
          const exp = await createExport(db, { format: 'preference', filters: {}, filtersRecord: { by: 'trainer-loop', trigger }, createdBy: 'trainer-loop' });
          return { exportId: exp.id };
        });
      } catch (err) {
        return this.refuse(trigger, 'store_unavailable', `cannot export the approved pairs: store unavailable: ${errorText(err)}`);
      }
      if ('problem' in exported) return this.refuse(trigger, 'no_training_data', exported.problem);
      data = { kind: 'export', exportId: exported.exportId };
    }
    const moderation = request ? null : await this.moderationData(trigger);
    const sft = request ? null : await this.sftData(trigger);
    const input: LoopJobDataInput = {
      algorithm: this.config.loop.algorithm,
      ...(this.config.loop.algorithm === 'external' ? { external: { waitMs: this.config.loop.externalWaitMs } } : {}),
      ...(this.config.loop.independentRm === 'on' ? { independentRm: {} } : {}),
      ...(request?.overrides ?? {}),
      data,
      trigger,
      ...(moderation ? { moderation: { data: moderation } } : {}),
      ...(sft ? { sft: { data: sft } } : {}),
    };
    const jobData = loopJobDataSchema.parse(input);
    const job = await this.loopQueue.add(QUEUES.loop, jobData);
    this.logger.log(`${loopRunId(job)} queued (${trigger}) on ${data.kind === 'export' ? `export ${data.exportId}` : data.path}`);
    return this.status(`${loopRunId(job)} queued`);
  }

  /**
   * The reviewers' moderation data as a `moderation` export for the run's moderation-train stage, when there is any
   * and the stage is on (FLYWHEEL_LOOP_MODERATION); a store error only skips the stage.
   */
  private async moderationData(trigger: LoopTrigger): Promise<TrainingDataSource | null> {
    if (this.config.loop.moderation === 'off') return null;
    try {
      return await this.store.use(async (db) => {
        if ((await countModerationDataSince(db, null)) === 0) return null;
        const exp = await createExport(db, { format: 'moderation', filters: {}, filtersRecord: { by: 'trainer-loop', trigger }, createdBy: 'trainer-loop' });
        return exp.row_count > 0 ? { kind: 'export' as const, exportId: exp.id } : null;
      });
    } catch (err) {
      this.logger.warn(`no moderation-train stage: cannot export the moderation labels: ${errorText(err)}`);
      return null;
    }
  }

  /**
   * Approved answers and corrections as an `sft` export, when any exist: for the run's warm start when FLYWHEEL_LOOP_SFT
   * is on, and always for an `external` run (its hand-off offers them to the cluster's SFT).
   */
  private async sftData(trigger: LoopTrigger): Promise<TrainingDataSource | null> {
    if (this.config.loop.sft === 'off' && this.config.loop.algorithm !== 'external') return null;
    try {
      return await this.store.use(async (db) => {
        if ((await buildExportContent(db, 'sft', {})).rowCount === 0) return null;
        const exp = await createExport(db, { format: 'sft', filters: {}, filtersRecord: { by: 'trainer-loop', trigger }, createdBy: 'trainer-loop' });
        return { kind: 'export' as const, exportId: exp.id };
      });
    } catch (err) {
      this.logger.warn(`no sft stage: cannot export the approved answers: ${errorText(err)}`);
      return null;
    }
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
