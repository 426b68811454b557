/**
 * The admin API's training runs: a page of top-level runs and one run in detail (series, stage runs,
 * versions), read from the store and checked against the contracts' schemas. No NATS here: the loop's
 * live state is admin-loop.service.ts.
 */
import { adminRunListSchema, adminRunsQuerySchema, trainingRunDetailSchema, type AdminRunList, type TrainingRunDetail } from '@flywheel/contracts';
import { Injectable } from '@nestjs/common';
import { getTrainingRunDetail, listTrainingRuns } from '@flywheel/store';
import { fromZodError, OpenAiError } from '../http/openai-error';
import { StoreHandle } from '../store/store.handle';

@Injectable()
export class AdminRunsService {
  constructor(private readonly store: StoreHandle) {}

  async list(query: unknown): Promise<AdminRunList> {
    const parsed = adminRunsQuerySchema.safeParse(query ?? {});
    if (!parsed.success) throw fromZodError(parsed.error, query);
    const q = parsed.data;
    // One more than asked tells whether another page follows.
    const rows = await listTrainingRuns(this.store.get().db, {
      parentRunId: null,
      limit: q.limit + 1,
      ...(q.kind ? { kind: q.kind } : {}),
      ...(q.before ? { before: q.before } : {}),
    });
    return adminRunListSchema.parse({ object: 'list', data: rows.slice(0, q.limit), has_more: rows.length > q.limit });
  }

  async detail(id: string): Promise<TrainingRunDetail> {
    const run = await getTrainingRunDetail(this.store.get().db, id);
    if (!run) throw new OpenAiError(404, 'invalid_request_error', `No training run found with id '${id}'.`, 'id', 'run_not_found');
    return trainingRunDetailSchema.parse(run);
  }
}
