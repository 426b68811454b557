/**
 * Training runs: the RL loop's panel (paused or active, the run and stage in progress, approved feedback
 * since the last run against the threshold; Pause / Resume and Start run now, polled every few seconds,
 * with the trainer's unavailability shown inline) above the list of top-level runs, newest first. Each
 * run opens #/runs/<id> (run-detail.page.tsx). No charts here, so this page loads without Recharts.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import { TRAINING_RUN_KINDS, type LoopStatus, type TrainingRun, type TrainingRunKind } from '../../../libs/contracts/src/training-runs.schemas';
import { AdminApiError, adminApi } from './admin-api.client';
import { shortTime } from './format';
import { useReview } from './review.context';
import { keyMetrics, metricText, runDuration } from './runs.format';

const LOOP_POLL_MS = 3_000;
const LIST_POLL_MS = 5_000;
const PAGE = 50;

export const runHref = (id: string) => `#/runs/${encodeURIComponent(id)}`;

export function RunsPage() {
  return (
    <main className="main pad" aria-labelledby="runs-title">
      <h1 id="runs-title">Training runs</h1>
      <LoopPanel />
      <RunsList />
    </main>
  );
}

export function StatusBadge({ status }: { status: TrainingRun['status'] }) {
  return <span className={`badge run-${status}`}>{status}</span>;
}

function LoopPanel() {
  const { notify, onUnauthorized } = useReview();
  const [loop, setLoop] = useState<LoopStatus | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const load = useCallback(async () => {
    try {
      setLoop(await adminApi.loop());
      setError(null);
    } catch (err) {
      if (err instanceof AdminApiError && err.status === 401) onUnauthorized();
      setError(err instanceof Error ? err.message : String(err));
    }
  }, [onUnauthorized]);
  useEffect(() => {
    void load();
    const timer = setInterval(() => void load(), LOOP_POLL_MS);
    return () => clearInterval(timer);
  }, [load]);

  const act = async (action: 'pause' | 'resume' | 'start') => {
    setBusy(true);
    try {
      const next = await adminApi.loopAction(action);
      setLoop(next);
      setError(null);
      if (next.message) notify(next.message, 'info');
      else notify(action === 'pause' ? 'Loop paused' : action === 'resume' ? 'Loop resumed' : 'Run started', 'ok');
    } catch (err) {
      if (err instanceof AdminApiError && err.status === 401) onUnauthorized();
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  const threshold = loop ? Math.min(1, loop.minNewApproved === 0 ? 1 : loop.approvedSinceLastRun / loop.minNewApproved) : 0;
  return (
    <section className="panel loop" aria-label="Training loop">
      <div className="row">
        <h2>RL loop</h2>
        {loop ? (
          <span className={`badge ${loop.paused ? 'loop-paused' : 'loop-active'}`} data-testid="loop-state">
            {loop.paused ? 'Paused' : 'Active'}
          </span>
        ) : (
          <span className="badge" data-testid="loop-state">
            {error ? 'Unavailable' : '…'}
          </span>
        )}
        <span className="spacer" />
        {loop?.paused ? (
          <button type="button" disabled={busy || !!error} onClick={() => act('resume')}>
            Resume
          </button>
        ) : (
          <button type="button" disabled={busy || !!error || !loop} onClick={() => act('pause')}>
            Pause
          </button>
        )}
        <button type="button" className="primary" disabled={busy || !!error || !loop || loop.running !== null} onClick={() => act('start')}>
          Start run now
        </button>
      </div>
      {error ? (
        <p role="alert" className="error-text">
          {error}
        </p>
      ) : null}
      {loop ? (
        <dl className="facts">
          <div>
            <dt>Now</dt>
            <dd data-testid="loop-running">
              {loop.running ? (
                <>
                  <a href={runHref(loop.running.runId)} className="mono">
                    {loop.running.runId}
                  </a>{' '}
                  · stage <strong>{loop.running.stage}</strong> · since {shortTime(loop.running.startedAt)}
                </>
              ) : (
                <span className="muted">idle</span>
              )}
            </dd>
          </div>
          <div>
            <dt>Approved since last run</dt>
            <dd>
              <meter min={0} max={1} value={threshold} aria-label="Approved feedback toward the next run" />{' '}
              {loop.approvedSinceLastRun} / {loop.minNewApproved}
            </dd>
          </div>
          <div>
            <dt>Schedule</dt>
            <dd>{loop.scheduleMs === null ? 'by hand only' : `checks every ${metricText(loop.scheduleMs / 1000)} s`}</dd>
          </div>
          <div>
            <dt>Last run</dt>
            <dd>
              {loop.lastRun ? (
                <>
                  <a href={runHref(loop.lastRun.runId)} className="mono">
                    {loop.lastRun.runId}
                  </a>{' '}
                  <StatusBadge status={loop.lastRun.status} />
                  {loop.lastRun.finishedAt ? <span className="muted small"> {shortTime(loop.lastRun.finishedAt)}</span> : null}
                </>
              ) : (
                <span className="muted">none yet</span>
              )}
            </dd>
          </div>
        </dl>
      ) : null}
    </section>
  );
}

function RunsList() {
  const { notify, onUnauthorized } = useReview();
  const [kind, setKind] = useState<TrainingRunKind | ''>('');
  const [head, setHead] = useState<TrainingRun[] | null>(null);
  const [older, setOlder] = useState<TrainingRun[]>([]);
  const [hasMore, setHasMore] = useState(false);
  /** Older pages loaded: while there are some, has_more is theirs, not the first page's. */
  const olderPages = useRef(0);

  const fail = useCallback(
    (err: unknown) => {
      if (err instanceof AdminApiError && err.status === 401) onUnauthorized();
      notify(err instanceof Error ? err.message : String(err), 'error');
    },
    [notify, onUnauthorized],
  );
  // The first page follows the runs as they progress; older pages, once loaded, stay as they were.
  useEffect(() => {
    let stopped = false;
    setOlder([]);
    setHead(null);
    olderPages.current = 0;
    const load = async () => {
      try {
        const page = await adminApi.runs({ limit: PAGE, ...(kind ? { kind } : {}) });
        if (stopped) return;
        setHead(page.data);
        if (olderPages.current === 0) setHasMore(page.has_more);
      } catch (err) {
        if (!stopped) fail(err);
      }
    };
    void load();
    const timer = setInterval(() => void load(), LIST_POLL_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [kind, fail]);

  const rows = head ? [...head, ...older.filter((r) => !head.some((h) => h.id === r.id))] : [];
  const loadOlder = async () => {
    const last = rows[rows.length - 1];
    if (!last) return;
    try {
      const page = await adminApi.runs({ limit: PAGE, before: last.id, ...(kind ? { kind } : {}) });
      olderPages.current += 1;
      setOlder((o) => [...o, ...page.data]);
      setHasMore(page.has_more);
    } catch (err) {
      fail(err);
    }
  };

  return (
    <section className="runs-list" aria-labelledby="runs-list-title">
      <div className="row">
        <h2 id="runs-list-title">Runs</h2>
        <span className="spacer" />
        <label>
          Kind
          <select value={kind} onChange={(e) => setKind(e.target.value === '' ? '' : (TRAINING_RUN_KINDS.find((k) => k === e.target.value) ?? ''))}>
            <option value="">all</option>
            {TRAINING_RUN_KINDS.map((k) => (
              <option key={k}>{k}</option>
            ))}
          </select>
        </label>
      </div>
      <RunTable label="Training runs" runs={rows}>
        {head && rows.length === 0 ? (
          <tr>
            <td colSpan={6} className="empty">
              No training runs yet{kind ? ` of kind ${kind}` : ''}.
            </td>
          </tr>
        ) : null}
      </RunTable>
      {hasMore ? (
        <div className="row end pad">
          <button type="button" onClick={loadOlder}>
            Older runs
          </button>
        </div>
      ) : null}
    </section>
  );
}

/** The runs grid (list page and a loop's stages): one RunRow per run, then any extra rows. */
export function RunTable({ label, runs, children }: { label: string; runs: TrainingRun[]; children?: React.ReactNode }) {
  return (
    <table className="grid runs" aria-label={label}>
      <thead>
        <tr>
          <th scope="col">Run</th>
          <th scope="col" className="w-kind">
            Kind
          </th>
          <th scope="col" className="w-kind">
            Status
          </th>
          <th scope="col" className="w-time">
            Started
          </th>
          <th scope="col" className="w-time">
            Duration
          </th>
          <th scope="col">Key metrics</th>
        </tr>
      </thead>
      <tbody>
        {runs.map((r) => (
          <RunRow key={r.id} run={r} />
        ))}
        {children}
      </tbody>
    </table>
  );
}

export function RunRow({ run }: { run: TrainingRun }) {
  return (
    <tr data-id={run.id}>
      <td className="clip">
        <a href={runHref(run.id)} className="mono" title={run.id}>
          {run.id}
        </a>
        {run.stage ? <span className="muted small"> · {run.stage}</span> : null}
        {run.error ? (
          <div className="error-text small clip" title={run.error}>
            {run.error}
          </div>
        ) : null}
      </td>
      <td>
        <span className="kind">{run.kind}</span>
      </td>
      <td>
        <StatusBadge status={run.status} />
      </td>
      <td className="nowrap small" title={run.startedAt ?? run.createdAt}>
        {shortTime(run.startedAt ?? run.createdAt)}
      </td>
      <td className="nowrap small">{runDuration(run)}</td>
      <td className="small">
        {keyMetrics(run.metrics).map(([name, v]) => (
          <span key={name} className="metric">
            <span className="muted">{name}</span> {metricText(v)}
          </span>
        ))}
      </td>
    </tr>
  );
}
