/**
 * How far a run got, shared by the Runs list, the loop panel and a run's page: the loop's stages in order with the
 * current one marked, the running stage's job progress as a bar (step k of n, or an indeterminate bar for a stage
 * that counts no steps), and a failed run's stage and error. Presentation only: the loop status and the runs come
 * from runs.page.tsx and run-detail.page.tsx.
 */
import { LOOP_STAGES, type TrainingRun } from '../../../libs/contracts/src/training-runs.schemas';
import type { LiveLoopRun } from './run-live';

/** The steps a user sees move; `queued` and `done` are states before and after them. */
const TRACK = LOOP_STAGES.filter((s) => s !== 'queued' && s !== 'done');

/** `compact`: the bar and its text only, for a table row. */
export function StageProgress({ running, compact = false }: { running: LiveLoopRun; compact?: boolean }) {
  const at = TRACK.findIndex((s) => s === running.stage);
  const p = running.progress;
  return (
    <div className={compact ? 'stage-progress compact' : 'stage-progress'} data-testid="stage-progress" data-stage={running.stage}>
      {compact ? null : (
        <ol className="stage-track" aria-label="Loop stages">
          {TRACK.map((s, i) => (
            <li key={s} className={i < at ? 'done' : i === at ? 'current' : undefined} aria-current={i === at ? 'step' : undefined}>
              {s}
            </li>
          ))}
        </ol>
      )}
      <div className="row">
        {compact ? null : (
          <span>
            stage <strong>{running.stage}</strong>
          </span>
        )}
        {p ? (
          <>
            <progress max={p.steps} value={p.step} aria-label={`${running.stage} progress`} />
            <span className="small" data-testid="stage-progress-text">
              {running.stage} step {p.step} / {p.steps} · {Math.round((100 * p.step) / p.steps)}%
            </span>
          </>
        ) : (
          <>
            <progress aria-label={`${running.stage} progress`} />
            <span className="small muted" data-testid="stage-progress-text">
              {running.stage === 'queued' ? 'waiting for the trainer' : (running.message ?? `${running.stage}…`)}
            </span>
          </>
        )}
      </div>
    </div>
  );
}

/** "Failed at stage ppo: …" for a loop, "Failed: …" for another run; nothing without an error. */
export function failureText(run: Pick<TrainingRun, 'kind' | 'status' | 'stage' | 'error'>): string | null {
  if (!run.error) return null;
  if (run.status !== 'failed') return run.error;
  return run.kind === 'loop' && run.stage ? `Failed at stage ${run.stage}: ${run.error}` : `Failed: ${run.error}`;
}
