/**
 * One training run (#/runs/<id>): its facts, summary metrics and config, its per-step curves, and for a
 * loop its stage runs (linked) with each stage's curves, then the model versions it produced (promote and
 * roll back live on the Models page). While the run or a stage is active it refreshes every few seconds and, for
 * a loop or a loop's stage, shows the loop's stage and progress bar from the loop status; a failed run says in
 * which stage and why.
 */
import { useCallback, useEffect, useState } from 'react';
import type { TrainingRunDetail } from '../../../libs/contracts/src/training-runs.schemas';
import { AdminApiError, adminApi } from './admin-api.client';
import { shortTime } from './format';
import { useReview } from './review.context';
import { RunCharts } from './run-charts';
import { isLiveRun, type LiveLoopRun } from './run-live';
import { failureText, StageProgress } from './run-progress';
import { isActive, metricText, runDuration } from './runs.format';
import { RunTable, runHref } from './runs.page';
import { RunStatusBadge } from './status-badges';

const POLL_MS = 3_000;

/** The loop's running run when it is `run` or `run`'s loop; null when not, or when the trainer does not say. */
async function liveLoopRunOf(run: TrainingRunDetail): Promise<LiveLoopRun | null> {
  const loopId = run.kind === 'loop' ? run.id : run.parentRunId;
  if (loopId === null || !(isActive(run.status) || run.children.some((c) => isActive(c.status)))) return null;
  const running = await adminApi.loop().then(
    (s) => s.running,
    () => null,
  );
  return running?.runId === loopId ? running : null;
}

export function RunDetailPage({ id }: { id: string }) {
  const { notify, onUnauthorized } = useReview();
  const [run, setRun] = useState<TrainingRunDetail | null>(null);
  const [stages, setStages] = useState<TrainingRunDetail[]>([]);
  const [live, setLive] = useState<LiveLoopRun | null>(null);
  const [missing, setMissing] = useState(false);

  const load = useCallback(async (): Promise<boolean> => {
    try {
      const detail = await adminApi.run(id);
      // A loop logs no steps itself: its curves are its stages'.
      const [withSteps, running] = await Promise.all([Promise.all(detail.children.map((c) => adminApi.run(c.id))), liveLoopRunOf(detail)]);
      setRun(detail);
      setStages(withSteps.filter((s) => s.series.length > 0));
      setLive(running);
      setMissing(false);
      return isActive(detail.status) || detail.children.some((c) => isActive(c.status));
    } catch (err) {
      if (err instanceof AdminApiError && err.status === 401) onUnauthorized();
      if (err instanceof AdminApiError && err.status === 404) setMissing(true);
      else notify(err instanceof Error ? err.message : String(err), 'error');
      return false;
    }
  }, [id, notify, onUnauthorized]);

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    setRun(null);
    setStages([]);
    setLive(null);
    const tick = async () => {
      const again = await load();
      if (!stopped && again) timer = setTimeout(() => void tick(), POLL_MS);
    };
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [load]);

  if (missing) {
    return (
      <main className="main pad">
        <a href="#/runs" className="back">
          ← Runs
        </a>
        <p className="empty">No training run with id {id}.</p>
      </main>
    );
  }
  if (!run) return <p className="muted pad">Loading run…</p>;
  const summary = Object.entries(run.metrics);
  const failure = failureText(run);
  const progress = live && isLiveRun(run, live) ? live : null;
  return (
    <main className="main pad run-detail" aria-labelledby="run-title">
      <div className="conv-head">
        <a href={run.parentRunId ? runHref(run.parentRunId) : '#/runs'} className="back">
          ← {run.parentRunId ? 'Loop' : 'Runs'}
        </a>
        <h1 id="run-title" className="mono">
          {run.id}
        </h1>
        <span className="kind">{run.kind}</span>
        <RunStatusBadge status={run.status} />
        {run.stage ? <span className="muted">stage {run.stage}</span> : null}
      </div>
      {failure ? (
        <p role="alert" className="error-text run-error" data-testid="run-error">
          {failure}
        </p>
      ) : null}
      {progress ? (
        <section className="panel" aria-label="Progress">
          <StageProgress running={progress} compact={run.kind !== 'loop'} />
        </section>
      ) : null}
      <section className="panel" aria-label="Run facts">
        <dl className="facts">
          <Fact label="Created" value={shortTime(run.createdAt)} />
          <Fact label="Started" value={run.startedAt ? shortTime(run.startedAt) : '–'} />
          <Fact label="Finished" value={run.finishedAt ? shortTime(run.finishedAt) : '–'} />
          <Fact label="Duration" value={runDuration(run)} />
          <Fact label="Base version" value={run.baseVersion ?? '–'} mono />
          <Fact label="Export" value={run.exportId ?? '–'} mono />
          {run.parentRunId ? (
            <div>
              <dt>Loop</dt>
              <dd>
                <a href={runHref(run.parentRunId)} className="mono">
                  {run.parentRunId}
                </a>
              </dd>
            </div>
          ) : null}
          {run.series.length > 0 ? <Fact label="Steps logged" value={String(run.series.length)} /> : null}
        </dl>
        {summary.length > 0 ? (
          <>
            <h3>Summary</h3>
            <dl className="facts" aria-label="Summary metrics">
              {summary.map(([name, v]) => (
                <Fact key={name} label={name} value={metricText(typeof v === 'object' && v !== null ? JSON.stringify(v) : v)} mono />
              ))}
            </dl>
          </>
        ) : null}
        <details>
          <summary className="muted small">Config</summary>
          <pre className="pre mono small">{JSON.stringify(run.config, null, 2)}</pre>
        </details>
      </section>

      {run.series.length > 0 || run.children.length === 0 ? <RunCharts series={run.series} label="Curves" /> : null}

      {run.children.length > 0 ? (
        <section aria-labelledby="stages-title">
          <h2 id="stages-title">Stages</h2>
          <RunTable label="Stage runs" runs={run.children} live={live} />
          {stages.map((s) => (
            <div key={s.id} className="stage-curves">
              <h3>
                {s.kind} stage · <a href={runHref(s.id)}>{s.id}</a>
              </h3>
              <RunCharts series={s.series} label={`Curves of ${s.kind} stage`} />
            </div>
          ))}
        </section>
      ) : null}

      <section aria-labelledby="versions-title">
        <h2 id="versions-title">Versions produced</h2>
        {run.versions.length === 0 ? (
          <p className="muted">None{isActive(run.status) ? ' yet' : ''}.</p>
        ) : (
          <table className="grid" aria-label="Versions produced">
            <thead>
              <tr>
                <th scope="col">Version</th>
                <th scope="col" className="w-kind">
                  Role
                </th>
                <th scope="col" className="w-kind">
                  Status
                </th>
                <th scope="col">Run</th>
                <th scope="col" />
              </tr>
            </thead>
            <tbody>
              {run.versions.map((v) => (
                <tr key={v.id} data-version={v.id}>
                  <td className="mono">{v.id}</td>
                  <td>{v.role}</td>
                  <td>
                    <span className="kind">{v.status}</span>
                  </td>
                  <td className="mono small">{v.runId === run.id ? 'this run' : <a href={runHref(v.runId)}>{v.runId}</a>}</td>
                  <td>
                    <a href="#/models">Promote or roll back on Models</a>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </main>
  );
}

function Fact({ label, value, mono }: { label: string; value: string; mono?: boolean }) {
  return (
    <div>
      <dt>{label}</dt>
      <dd className={mono ? 'mono' : undefined}>{value}</dd>
    </div>
  );
}
