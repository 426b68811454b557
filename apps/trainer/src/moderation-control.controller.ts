/**
 * `trainer.moderation` over NATS: exports the reviewers' moderation data (labels and approved flags) now and queues a
 * `moderation-train` job on it, answering with the job, its run id and the export; refused while one is queued or
 * running, when there is nothing reviewed yet, or when the store does not answer. The job is
 * moderation-train.processor.ts.
 */
import { Controller, Logger } from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { MODERATION_TRAIN_SUBJECT, moderationTrainStartSchema, QUEUES, type ModerationTrainJobDataInput, type ModerationTrainStarted } from '@flywheel/contracts';
import { MeshHandlers } from '@flywheel/mesh';
import { createExport } from '@flywheel/store';
import { jobVersionId } from './queue.processor';
import { TrainerQueues } from './trainer.queues';
import { TrainerStore } from './trainer.store';

@Controller()
@MeshHandlers()
export class ModerationControlController {
  private readonly logger = new Logger('moderation-control');

  constructor(
    private readonly queues: TrainerQueues,
    private readonly store: TrainerStore,
  ) {}

  @MessagePattern(MODERATION_TRAIN_SUBJECT)
  async start(@Payload() data: unknown): Promise<ModerationTrainStarted> {
    const request = moderationTrainStartSchema.parse(data ?? {});
    const queue = this.queues.queues.get(QUEUES.moderationTrain);
    if (!queue) throw new Error('the moderation-train queue is missing');
    const counts = await queue.getJobCounts('active', 'waiting', 'delayed', 'prioritized');
    if (Object.values(counts).some((n) => n > 0)) return { ok: false, code: 'already_running', message: 'a moderation-train job is already queued or running' };
    let exported;
    try {
      exported = await this.store.use((db) => createExport(db, { format: 'moderation', filters: {}, filtersRecord: {}, createdBy: 'trainer' }));
    } catch (err) {
      return { ok: false, code: 'store_unavailable', message: `the store did not answer: ${err instanceof Error ? err.message : String(err)}` };
    }
    if (exported.row_count === 0) {
      return { ok: false, code: 'no_training_data', message: 'no reviewed moderation data yet: label prompts or answers in a conversation, or approve flag feedback' };
    }
    const jobData: ModerationTrainJobDataInput = { data: { kind: 'export', exportId: exported.id }, promote: request.promote };
    const job = await queue.add(QUEUES.moderationTrain, jobData);
    const runId = jobVersionId('mod', { id: job.id, timestamp: job.timestamp }, undefined);
    this.logger.log(`queued moderation-train job ${job.id ?? '?'} (run ${runId}) on export ${exported.id} (${exported.row_count} lines)`);
    return { ok: true, job_id: job.id ?? '', run_id: runId, export_id: exported.id, rows: exported.row_count };
  }
}
