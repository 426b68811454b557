/**
 * Training runs: the RL loop's panel (paused or active, the run in progress with its stage and progress bar,
 * approved feedback since the last run against the threshold; Pause / Resume and Start run now, with what each
 * did or why it did nothing shown under the buttons, and the trainer's or the store's unavailability inline)
 * above the list of top-level runs, newest first, a failed one with its stage and error. The loop status is
 * polled (faster while a run is in progress); the list refreshes while something runs and whenever the loop
 * status says a run started, moved on or ended. Each run opens #/runs/<id> (run-detail.page.tsx). No charts
 * here, so this page loads without Recharts.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import { TRAINING_RUN_KINDS, type LoopStatus, type TrainingRun, type TrainingRunKind } from '../../../libs/contracts/src/training-runs.schemas';
import { AdminApiError, adminApi } from './admin-api.client';
import { shortTime } from './format';
import { useReview } from './review.context';
import { isLiveRun, type LiveLoopRun } from './run-live';
import { failureText, StageProgress } from './run-progress';
import { isActive, keyMetrics, metricText, runDuration } from './runs.format';
import { RunStatusBadge } from './status-badges';

const LOOP_POLL_RUNNING_MS = 2_000;
const LOOP_POLL_IDLE_MS = 5_000;
/** Only while a listed run is active or the loop runs one. */
const LIST_POLL_MS = 2_500;
const PAGE = 50;

export const runHref = (id: string) => `#/runs/${encodeURIComponent(id)}`;

export function RunsPage() {
  const loop = useLoopStatus();
  return (
    <main className="main pad" aria-labelledby="runs-title">
      <h1 id="runs-title">Training runs</h1>
      <LoopPanel {...loop} />
      <RunsList loop={loop.loop} />
    </main>
  );
}

interface LoopState {
  loop: LoopStatus | null;
  /** Why the last poll failed (the trainer not answering); null once one succeeds. */
  error: string | null;
  setLoop(loop: LoopStatus): void;
  reload(): Promise<void>;
}

/** The trainer's loop status, polled every few seconds (more often while a run is in progress). */
function useLoopStatus(): LoopState {
  const { onUnauthorized } = useReview();
  const [loop, setLoopState] = useState<LoopStatus | null>(null);
  const [error, setError] = useState<string | null>(null);
  const reload = useCallback(async () => {
    try {
      setLoopState(await adminApi.loop());
      setError(null);
    } catch (err) {
      if (err instanceof AdminApiError && err.status === 401) onUnauthorized();
      setError(err instanceof Error ? err.message : String(err));
    }
  }, [onUnauthorized]);
  const setLoop = useCallback((next: LoopStatus) => {
    setLoopState(next);
    setError(null);
  }, []);
  const running = loop?.running != null;
  useEffect(() => {
    void reload();
    const timer = setInterval(() => void reload(), running ? LOOP_POLL_RUNNING_MS : LOOP_POLL_IDLE_MS);
    return () => clearInterval(timer);
  }, [reload, running]);
  return { loop, error, setLoop, reload };
}

/** What the last button press did, or why it did nothing: shown under the buttons until the next press. */
interface Outcome {
  tone: 'ok' | 'error';
  text: string;
}

function LoopPanel({ loop, error, setLoop, reload }: LoopState) {
  const { onUnauthorized } = useReview();
  const [busy, setBusy] = useState(false);
  const [outcome, setOutcome] = useState<Outcome | null>(null);

  const act = async (action: 'pause' | 'resume' | 'start') => {
    setBusy(true);
    setOutcome(null);
    try {
      const next = await adminApi.loopAction(action);
      setLoop(next);
      const done = action === 'pause' ? 'Loop paused' : action === 'resume' ? 'Loop resumed' : 'Run started';
      setOutcome({ tone: 'ok', text: next.message ?? done });
    } catch (err) {
      if (err instanceof AdminApiError && err.status === 401) onUnauthorized();
      const what = action === 'start' ? 'Start run now' : action === 'pause' ? 'Pause' : 'Resume';
      setOutcome({ tone: 'error', text: `${what} did nothing: ${err instanceof Error ? err.message : String(err)}` });
      // The refusal may say why the state differs from what the panel shows (a run already running).
      void reload();
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
        <button
          type="button"
          className="primary"
          disabled={busy || !!error || !loop || loop.running !== null}
          title={loop?.running ? `${loop.running.runId} is in progress` : undefined}
          onClick={() => act('start')}
        >
          Start run now
        </button>
      </div>
      {outcome ? (
        <p role={outcome.tone === 'error' ? 'alert' : 'status'} className={`loop-outcome ${outcome.tone}`} data-testid="loop-action-message">
          {outcome.text}
        </p>
      ) : null}
      {error ? (
        <p role="alert" className="error-text">
          {error}
        </p>
      ) : null}
      {!error && loop?.message && !outcome?.text.includes(loop.message) ? (
        <p className="warn-text" data-testid="loop-message">
          {loop.message}
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
                  <span className="muted small">since {shortTime(loop.running.startedAt)}</span>
                  <StageProgress running={loop.running} />
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
                  <RunStatusBadge status={loop.lastRun.status} />
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

function RunsList({ loop }: { loop: LoopStatus | null }) {
  const { notify, onUnauthorized } = useReview();
  const [kind, setKind] = useState<TrainingRunKind | ''>('');
  const [head, setHead] = useState<TrainingRun[] | null>(null);
  const [older, setOlder] = useState<TrainingRun[]>([]);
  const [hasMore, setHasMore] = useState(false);
  /** Older pages loaded: while there are some, has_more is theirs, not the first page's. */
  const olderPages = useRef(0);
  /** The kind filter now: an answer for another one is dropped. */
  const kindNow = useRef(kind);
  kindNow.current = kind;

  const fail = useCallback(
    (err: unknown) => {
      if (err instanceof AdminApiError && err.status === 401) onUnauthorized();
      notify(err instanceof Error ? err.message : String(err), 'error');
    },
    [notify, onUnauthorized],
  );
  // The first page follows the runs as they progress; older pages, once loaded, stay as they were.
  const load = useCallback(async () => {
    try {
      const page = await adminApi.runs({ limit: PAGE, ...(kind ? { kind } : {}) });
      if (kindNow.current !== kind) return;
      setHead(page.data);
      if (olderPages.current === 0) setHasMore(page.has_more);
    } catch (err) {
      if (kindNow.current === kind) fail(err);
    }
  }, [kind, fail]);
  useEffect(() => {
    setOlder([]);
    setHead(null);
    olderPages.current = 0;
    void load();
  }, [load]);

  // Polled only while something runs; the loop status (polled anyway) tells when a run starts, moves on or ends.
  const live = loop?.running ?? null;
  const active = live !== null || (head?.some((r) => isActive(r.status)) ?? false);
  useEffect(() => {
    if (!active) return;
    const timer = setInterval(() => void load(), LIST_POLL_MS);
    return () => clearInterval(timer);
  }, [active, load]);
  const loopKey = [live?.runId, live?.stage, loop?.lastRun?.runId, loop?.lastRun?.status].join('|');
  const seenLoopKey = useRef<string | null>(null);
  useEffect(() => {
    if (seenLoopKey.current !== null && seenLoopKey.current !== loopKey) void load();
    seenLoopKey.current = loopKey;
  }, [loopKey, load]);

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
      <RunTable label="Training runs" runs={rows} live={live}>
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

/** The runs grid (list page and a loop's stages): one RunRow per run, then any extra rows. `live`: the loop's running run. */
export function RunTable({ label, runs, live = null, children }: { label: string; runs: TrainingRun[]; live?: LiveLoopRun | null; children?: React.ReactNode }) {
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
          <RunRow key={r.id} run={r} live={isLiveRun(r, live) ? live : null} />
        ))}
        {children}
      </tbody>
    </table>
  );
}

/** `live`: the loop's running run when it is this run or the stage of it this run is (its progress bar shows). */
export function RunRow({ run, live = null }: { run: TrainingRun; live?: LiveLoopRun | null }) {
  const failure = failureText(run);
  return (
    <tr data-id={run.id}>
      <td className="clip">
        <a href={runHref(run.id)} className="mono" title={run.id}>
          {run.id}
        </a>
        {run.stage ? <span className="muted small"> · {run.stage}</span> : null}
        {live ? <StageProgress running={live} compact /> : null}
        {failure ? (
          <div className="error-text small run-error" data-testid="run-error">
            {failure}
          </div>
        ) : null}
      </td>
      <td>
        <span className="kind">{run.kind}</span>
      </td>
      <td>
        <RunStatusBadge status={run.status} />
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
