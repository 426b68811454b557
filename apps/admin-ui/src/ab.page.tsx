/**
 * The blind A/B queue: one pending pair at a time (the prompt, then outputs A and B side by side, a candidate's and
 * the active version's in an order the server drew), three verdicts by button or key (1 / a: A better, 2 / t: tie,
 * 3 / b: B better), the next pair after each; below, each candidate's verdicts so far, its win rate with the 95%
 * interval, and once decided a button that acts on it. Which output is the candidate is never known here, and the
 * summary is not refreshed after each verdict (a count that moves would tell which side the candidate was): only when
 * the queue runs empty, or on request.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import type { AbVerdict, AdminAbItem, AdminAbSummary } from '../../../libs/contracts/src/admin.schemas';
import { AdminApiError, adminApi } from './admin-api.client';
import { AbDecisionBadge, pct } from './ab-summary';
import { MessageView } from './message-view';
import { useReview, useShortcuts } from './review.context';

const VERDICT_TEXT: Record<AbVerdict, string> = { a: 'A better', tie: 'tie', b: 'B better' };

export function AbPage() {
  const { notify, onUnauthorized } = useReview();
  const [queue, setQueue] = useState<AdminAbItem[] | null>(null);
  const [pending, setPending] = useState(0);
  const [summary, setSummary] = useState<AdminAbSummary[] | null>(null);
  const [given, setGiven] = useState(0);
  const [busy, setBusy] = useState(false);
  /** Set while a verdict is on its way: a second key press must not judge the same pair twice. */
  const sending = useRef(false);

  const fail = useCallback(
    (err: unknown) => {
      if (err instanceof AdminApiError && err.status === 401) onUnauthorized();
      notify(err instanceof Error ? err.message : String(err), 'error');
    },
    [notify, onUnauthorized],
  );
  const loadQueue = useCallback(async () => {
    try {
      const page = await adminApi.abQueue();
      setQueue(page.data);
      setPending(page.pending);
    } catch (err) {
      fail(err);
    }
  }, [fail]);
  const loadSummary = useCallback(async () => {
    try {
      setSummary(await adminApi.abSummary());
    } catch (err) {
      fail(err);
    }
  }, [fail]);
  useEffect(() => {
    void loadQueue();
    void loadSummary();
  }, [loadQueue, loadSummary]);

  const current = queue?.[0] ?? null;
  const next = async () => {
    const rest = (queue ?? []).slice(1);
    if (rest.length === 0) await loadQueue();
    else setQueue(rest);
  };

  const judge = async (verdict: AbVerdict) => {
    if (!current || sending.current) return;
    sending.current = true;
    setBusy(true);
    try {
      const r = await adminApi.abVerdict(current.id, verdict);
      setGiven((n) => n + 1);
      setPending(r.pending);
      notify(`Verdict: ${VERDICT_TEXT[verdict]}`, 'ok');
      await next();
      if (r.pending === 0) await loadSummary();
    } catch (err) {
      // Another reviewer judged it first (or it is gone): move on.
      if (err instanceof AdminApiError && (err.status === 409 || err.status === 404)) {
        notify(err.message, 'info');
        await next();
      } else fail(err);
    } finally {
      sending.current = false;
      setBusy(false);
    }
  };
  useShortcuts({
    '1': () => void judge('a'),
    a: () => void judge('a'),
    '2': () => void judge('tie'),
    t: () => void judge('tie'),
    '3': () => void judge('b'),
    b: () => void judge('b'),
  });

  const decide = async (version: string) => {
    setBusy(true);
    try {
      const d = await adminApi.abDecide(version);
      notify(d.outcome === 'promoted' ? `Promoted ${version}: replicas are swapping` : `Refused ${version}: its version is rejected`, 'ok');
      await loadSummary();
    } catch (err) {
      fail(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="main pad narrow stack" aria-labelledby="ab-title">
      <div className="row">
        <h1 id="ab-title">Blind A/B</h1>
        <span className="spacer" />
        <span className="muted" data-testid="ab-pending">
          {pending} pending{given > 0 ? ` · ${given} judged this session` : ''}
        </span>
      </div>
      {current ? (
        <section className="panel stack" aria-label="Pair to judge" data-id={current.id}>
          <div aria-label="Prompt" role="group">
            {current.prompt.map((m, i) => (
              <div key={i} className={`msg msg-${m.role}`}>
                <span className="role">{m.role}</span>
                <MessageView text={m.content} />
              </div>
            ))}
          </div>
          <div className="choices two">
            {(['a', 'b'] as const).map((side) => (
              <section key={side} className="panel" aria-label={`Output ${side.toUpperCase()}`}>
                <div className="choice-head">
                  <h2>{side.toUpperCase()}</h2>
                </div>
                <div className="answer">
                  <MessageView text={side === 'a' ? current.output_a : current.output_b} />
                </div>
              </section>
            ))}
          </div>
          <div className="row" role="group" aria-label="Verdict">
            <button type="button" className="primary" disabled={busy} aria-keyshortcuts="1 a" onClick={() => void judge('a')}>
              A better <kbd>1</kbd>
            </button>
            <button type="button" disabled={busy} aria-keyshortcuts="2 t" onClick={() => void judge('tie')}>
              Tie <kbd>2</kbd>
            </button>
            <button type="button" className="primary" disabled={busy} aria-keyshortcuts="3 b" onClick={() => void judge('b')}>
              B better <kbd>3</kbd>
            </button>
          </div>
        </section>
      ) : (
        <p className="panel muted">{queue ? 'No pairs waiting for a verdict. An eval that passes its gate queues some.' : 'Loading…'}</p>
      )}
      <AbSummaryTable summary={summary} busy={busy} onDecide={(v) => void decide(v)} onRefresh={() => void loadSummary()} />
    </main>
  );
}

function AbSummaryTable(p: { summary: AdminAbSummary[] | null; busy: boolean; onDecide(version: string): void; onRefresh(): void }) {
  const { summary, busy, onDecide } = p;
  return (
    <section className="stack" aria-labelledby="ab-summary-title">
      <div className="row">
        <h2 id="ab-summary-title">Per candidate</h2>
        <span className="spacer" />
        <button type="button" className="ghost" title="not refreshed after each verdict, so it cannot tell which side was the candidate" onClick={p.onRefresh}>
          Refresh summary
        </button>
      </div>
      <table className="grid" aria-label="A/B summary">
        <thead>
          <tr>
            <th scope="col">Candidate</th>
            <th scope="col">Against</th>
            <th scope="col" className="num">
              Verdicts
            </th>
            <th scope="col" className="num">
              Wins
            </th>
            <th scope="col" className="num">
              Ties
            </th>
            <th scope="col" className="num">
              Losses
            </th>
            <th scope="col">Win rate (95%)</th>
            <th scope="col">Decision</th>
            <th scope="col" />
          </tr>
        </thead>
        <tbody>
          {(summary ?? []).map((s) => (
            <tr key={s.candidate_version} data-version={s.candidate_version}>
              <td className="mono">{s.candidate_version}</td>
              <td className="mono small">{s.active_version}</td>
              <td className="num">
                {s.verdicts} / {s.items}
              </td>
              <td className="num">{s.candidate_wins}</td>
              <td className="num">{s.ties}</td>
              <td className="num">{s.active_wins}</td>
              <td className="nowrap" data-testid="win-rate">
                {s.win_rate === null || s.interval === null ? <span className="muted">—</span> : `${pct(s.win_rate)} (${pct(s.interval.low)}–${pct(s.interval.high)})`}
              </td>
              <td>
                <AbDecisionBadge s={s} />
              </td>
              <td>
                {s.decided ? (
                  <button
                    type="button"
                    disabled={busy}
                    title={s.decision === 'promote' ? 'make it the active policy' : 'mark its version rejected'}
                    aria-label={`${s.decision === 'promote' ? 'Promote' : 'Refuse'} ${s.candidate_version}`}
                    onClick={() => onDecide(s.candidate_version)}
                  >
                    {s.decision === 'promote' ? 'Promote' : 'Refuse'}
                  </button>
                ) : null}
              </td>
            </tr>
          ))}
          {summary && summary.length === 0 ? (
            <tr>
              <td colSpan={9} className="empty">
                No candidate has pairs in the A/B queue yet.
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>
    </section>
  );
}
