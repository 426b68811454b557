/**
 * Which run the loop's live status belongs to, for the progress bars of the Runs list and a run's page. Plain logic,
 * no rendering (run-progress.tsx draws the bars).
 */
import type { LoopStatus, TrainingRun } from '../../../libs/contracts/src/training-runs.schemas';

export type LiveLoopRun = NonNullable<LoopStatus['running']>;

/**
 * Whether `live` (the loop's running run) is this run, or this run is the stage in progress of it. A finished run
 * never is: the loop status is polled apart from the runs, and for a poll it can still name a run the list already
 * shows as succeeded (which would show "succeeded" beside a progress bar).
 */
export function isLiveRun(run: Pick<TrainingRun, 'id' | 'kind' | 'parentRunId' | 'status'>, live: LiveLoopRun | null): boolean {
  if (!live || (run.status !== 'queued' && run.status !== 'running')) return false;
  return live.runId === run.id || (live.runId === run.parentRunId && live.stage === run.kind);
}
