/**
 * The review inbox: feedback (or completions) newest first, with filters and keyset pagination driven by
 * the API's next_cursor; j/k/x/a/r/u/e keyboard review of one item or the checked selection; and the
 * panel of decisions taken in this session. Filters, page and cursor survive a visit to a conversation.
 */
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import type {
  AdminCompletionSummary,
  AdminFeedback,
  AdminFeedbackInboxItem,
  AdminInboxPage,
  AdminReviewAction,
} from '../../../libs/contracts/src/admin.schemas';
import { FEEDBACK_KINDS, REVIEW_STATUSES, type FeedbackKind, type ReviewStatus } from '../../../libs/contracts/src/feedback.schemas';
import { AdminApiError, adminApi } from './admin-api.client';
import { go } from './navigation';
import { dayEndIso, dayStartIso, feedbackValueText, shortId, shortTime } from './format';
import { ReviewStatusBadge } from './status-badges';
import { EditCorrectionDialog, useReview, useShortcuts, type DecisionLogEntry } from './review.context';

type View = 'feedback' | 'completions';

interface Filters {
  view: View;
  status: ReviewStatus | '';
  kind: FeedbackKind | '';
  policyVersion: string;
  flagged: boolean;
  fromDay: string;
  toDay: string;
  q: string;
}

interface InboxMemory {
  filters: Filters;
  /** cursors[i] fetches page i (undefined: the first page). */
  cursors: (string | undefined)[];
  focus: number;
}

const PAGE_SIZE = 50;
const initialFilters: Filters = { view: 'feedback', status: 'pending', kind: '', policyVersion: '', flagged: false, fromDay: '', toDay: '', q: '' };
/** Kept across route changes so "back to the inbox" lands where the reviewer was. */
let memory: InboxMemory = { filters: initialFilters, cursors: [undefined], focus: 0 };

type Row = { type: 'feedback'; item: AdminFeedbackInboxItem } | { type: 'completion'; item: AdminCompletionSummary };

function rowsOf(page: AdminInboxPage | null): Row[] {
  if (!page) return [];
  return page.view === 'feedback'
    ? page.data.map((item) => ({ type: 'feedback' as const, item }))
    : page.data.map((item) => ({ type: 'completion' as const, item }));
}

const completionIdOf = (r: Row) => (r.type === 'feedback' ? r.item.completion_id : r.item.id);

export function InboxPage() {
  const { decide, notify, onUnauthorized, log } = useReview();
  const [filters, setFilters] = useState<Filters>(memory.filters);
  const [query, setQuery] = useState(memory.filters.q);
  const [cursors, setCursors] = useState(memory.cursors);
  const [focus, setFocus] = useState(memory.focus);
  const [page, setPage] = useState<AdminInboxPage | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [editing, setEditing] = useState<AdminFeedbackInboxItem | null>(null);
  const [versions, setVersions] = useState<string[]>([]);
  const searchRef = useRef<HTMLInputElement>(null);
  const listRef = useRef<HTMLTableSectionElement>(null);

  memory = { filters, cursors, focus };
  const cursor = cursors[cursors.length - 1];

  useEffect(() => {
    adminApi.policyVersions().then(setVersions, () => undefined);
  }, []);

  // The search box applies 300 ms after the last keystroke (only typing restarts the timer).
  useEffect(() => {
    if (query === filters.q) return;
    const t = window.setTimeout(() => applyFilters({ q: query }), 300);
    return () => window.clearTimeout(t);
  }, [query]);

  const load = useCallback(async () => {
    setLoading(true);
    setError(null);
    try {
      const p = await adminApi.inbox({
        view: filters.view,
        status: filters.status || undefined,
        kind: filters.view === 'feedback' && filters.kind ? filters.kind : undefined,
        policy_version: filters.policyVersion || undefined,
        flagged: filters.flagged ? 'true' : undefined,
        from: dayStartIso(filters.fromDay),
        to: dayEndIso(filters.toDay),
        q: filters.q.trim() || undefined,
        cursor,
        limit: PAGE_SIZE,
      });
      setPage(p);
      setFocus((f) => Math.min(f, Math.max(0, p.data.length - 1)));
    } catch (err) {
      if (err instanceof AdminApiError && err.status === 401) onUnauthorized();
      setError(err instanceof Error ? err.message : String(err));
      setPage(null);
    } finally {
      setLoading(false);
    }
  }, [filters, cursor, onUnauthorized]);

  useEffect(() => {
    void load();
  }, [load]);

  const rows = useMemo(() => rowsOf(page), [page]);
  const current = rows[focus];

  function applyFilters(patch: Partial<Filters>) {
    setFilters((f) => ({ ...f, ...patch }));
    setCursors([undefined]);
    setFocus(0);
    setSelected(new Set());
  }

  /** Replaces decided feedback in the page with the server's answer, so the row shows its new status. */
  function patchRows(updated: AdminFeedback[]) {
    const byId = new Map(updated.map((f) => [f.id, f]));
    setPage((p) =>
      p && p.view === 'feedback'
        ? { ...p, data: p.data.map((item) => (byId.has(item.id) ? { ...item, ...byId.get(item.id)! } : item)) }
        : p,
    );
  }

  async function decideOn(action: 'approve' | 'reject' | 'reset') {
    if (filters.view !== 'feedback') {
      notify('Decisions apply to feedback: open the conversation (Enter) or switch to the feedback view.', 'error');
      return;
    }
    const ids = selected.size > 0 ? [...selected] : current?.type === 'feedback' ? [current.item.id] : [];
    if (ids.length === 0) return;
    const res = await decide(ids.map((feedback_id): AdminReviewAction => ({ action, feedback_id })));
    if (!res) return;
    patchRows(res.results.flatMap((r) => (r.ok ? [r.feedback] : [])));
    if (selected.size > 0) setSelected(new Set());
    else moveFocus(1);
  }

  function moveFocus(delta: number) {
    setFocus((f) => {
      const next = Math.max(0, Math.min(rows.length - 1, f + delta));
      window.requestAnimationFrame(() => {
        const el = listRef.current?.querySelector<HTMLElement>(`[data-row="${next}"]`);
        el?.focus();
        el?.scrollIntoView({ block: 'nearest' });
      });
      return next;
    });
  }

  function toggle(id: string) {
    setSelected((s) => {
      const n = new Set(s);
      if (n.has(id)) n.delete(id);
      else n.add(id);
      return n;
    });
  }

  const rowKey = (r: Row) => r.item.id;

  useShortcuts({
    j: () => moveFocus(1),
    k: () => moveFocus(-1),
    ArrowDown: () => moveFocus(1),
    ArrowUp: () => moveFocus(-1),
    x: () => current && toggle(rowKey(current)),
    a: () => void decideOn('approve'),
    r: () => void decideOn('reject'),
    u: () => void decideOn('reset'),
    e: () => {
      if (current?.type === 'feedback' && current.item.kind === 'correction') setEditing(current.item);
      else notify('Only a correction can be edited.', 'error');
    },
    Enter: () => current && go(`#/c/${encodeURIComponent(completionIdOf(current))}`),
    o: () => current && go(`#/c/${encodeURIComponent(completionIdOf(current))}`),
    '/': () => searchRef.current?.focus(),
  });

  const allOnPage = rows.length > 0 && rows.every((r) => selected.has(rowKey(r)));

  return (
    <div className="layout">
      <main className="main" aria-labelledby="inbox-title">
        <h1 id="inbox-title" className="sr-only">
          Inbox
        </h1>
        <form className="filters" aria-label="Filters" onSubmit={(e) => e.preventDefault()}>
          <div className="segmented" role="group" aria-label="Show">
            {(['feedback', 'completions'] as const).map((v) => (
              <button
                key={v}
                type="button"
                aria-pressed={filters.view === v}
                className={filters.view === v ? 'on' : ''}
                onClick={() => applyFilters({ view: v })}
              >
                {v === 'feedback' ? 'Feedback' : 'Completions'}
              </button>
            ))}
          </div>
          <label>
            Status
            <select value={filters.status} onChange={(e) => applyFilters({ status: e.target.value as Filters['status'] })}>
              <option value="">any</option>
              {REVIEW_STATUSES.map((s) => (
                <option key={s}>{s}</option>
              ))}
            </select>
          </label>
          <label>
            Kind
            <select
              value={filters.kind}
              disabled={filters.view !== 'feedback'}
              onChange={(e) => applyFilters({ kind: e.target.value as Filters['kind'] })}
            >
              <option value="">any</option>
              {FEEDBACK_KINDS.map((k) => (
                <option key={k}>{k}</option>
              ))}
            </select>
          </label>
          <label>
            Policy
            <select value={filters.policyVersion} onChange={(e) => applyFilters({ policyVersion: e.target.value })}>
              <option value="">any</option>
              {versions.map((v) => (
                <option key={v}>{v}</option>
              ))}
            </select>
          </label>
          <label className="check">
            <input type="checkbox" checked={filters.flagged} onChange={(e) => applyFilters({ flagged: e.target.checked })} />
            flagged
          </label>
          <label>
            From
            <input type="date" value={filters.fromDay} onChange={(e) => applyFilters({ fromDay: e.target.value })} />
          </label>
          <label>
            To
            <input type="date" value={filters.toDay} onChange={(e) => applyFilters({ toDay: e.target.value })} />
          </label>
          <label className="grow">
            Search
            <input
              ref={searchRef}
              type="search"
              placeholder="text in prompt, answer or comment  ( / )"
              value={query}
              onChange={(e) => setQuery(e.target.value)}
              onKeyDown={(e) => {
                if (e.key === 'Escape' || e.key === 'Enter') {
                  e.currentTarget.blur();
                  if (e.key === 'Enter') applyFilters({ q: query });
                  moveFocus(0);
                }
              }}
            />
          </label>
        </form>

        <div className="bulkbar" aria-label="Bulk actions" role="toolbar">
          <span className="muted small">
            {selected.size > 0 ? `${selected.size} selected` : current ? 'acting on the current row' : ''}
          </span>
          <button type="button" onClick={() => void decideOn('approve')} disabled={filters.view !== 'feedback'} title="a">
            Approve <kbd>a</kbd>
          </button>
          <button type="button" onClick={() => void decideOn('reject')} disabled={filters.view !== 'feedback'} title="r">
            Reject <kbd>r</kbd>
          </button>
          <button type="button" onClick={() => void decideOn('reset')} disabled={filters.view !== 'feedback'} title="u">
            Reset <kbd>u</kbd>
          </button>
          {selected.size > 0 ? (
            <button type="button" className="ghost" onClick={() => setSelected(new Set())}>
              Clear selection
            </button>
          ) : null}
          <span className="spacer" />
          <span className="muted small" aria-live="polite">
            {loading ? 'loading…' : `page ${cursors.length} · ${rows.length} rows`}
          </span>
          <button type="button" disabled={cursors.length <= 1 || loading} onClick={() => setCursors((c) => c.slice(0, -1))}>
            ← Newer
          </button>
          <button
            type="button"
            disabled={!page?.next_cursor || loading}
            onClick={() => {
              if (page?.next_cursor) setCursors((c) => [...c, page.next_cursor ?? undefined]);
              setFocus(0);
            }}
          >
            Older →
          </button>
        </div>

        {error ? (
          <p role="alert" className="error-text pad">
            {error}
          </p>
        ) : null}

        <table className="grid" aria-label={filters.view === 'feedback' ? 'Feedback inbox' : 'Completions inbox'}>
          <thead>
            <tr>
              <th scope="col" className="w-check">
                <input
                  type="checkbox"
                  aria-label="Select every row on this page"
                  checked={allOnPage}
                  onChange={() => setSelected(allOnPage ? new Set() : new Set(rows.map(rowKey)))}
                />
              </th>
              <th scope="col">Status</th>
              {filters.view === 'feedback' ? (
                <>
                  <th scope="col" className="w-kind">
                    Kind
                  </th>
                  <th scope="col">Feedback</th>
                  <th scope="col">Completion</th>
                </>
              ) : (
                <>
                  <th scope="col">Outcome</th>
                  <th scope="col">Completion</th>
                  <th scope="col" className="num">
                    Choices
                  </th>
                  <th scope="col" className="num">
                    Feedback
                  </th>
                </>
              )}
              <th scope="col" className="w-policy">
                Policy
              </th>
              <th scope="col" className="w-time">
                Created
              </th>
            </tr>
          </thead>
          <tbody ref={listRef}>
            {rows.map((r, i) => (
              <tr
                key={r.item.id}
                data-row={i}
                data-id={r.item.id}
                tabIndex={i === focus ? 0 : -1}
                className={`${i === focus ? 'cursor' : ''} ${selected.has(rowKey(r)) ? 'selected' : ''}`}
                aria-selected={selected.has(rowKey(r))}
                onClick={() => setFocus(i)}
                onDoubleClick={() => go(`#/c/${encodeURIComponent(completionIdOf(r))}`)}
              >
                <td className="w-check">
                  <input
                    type="checkbox"
                    aria-label={`Select ${r.item.id}`}
                    checked={selected.has(rowKey(r))}
                    onChange={() => toggle(rowKey(r))}
                    onClick={(e) => e.stopPropagation()}
                  />
                </td>
                <td>
                  <ReviewStatusBadge status={r.item.review_status} />
                </td>
                {r.type === 'feedback' ? <FeedbackCells item={r.item} /> : <CompletionCells item={r.item} />}
                <td className="mono small">{r.item.policy_version}</td>
                <td className="small nowrap" title={r.item.created_at}>
                  {shortTime(r.item.created_at)}
                </td>
              </tr>
            ))}
            {!loading && rows.length === 0 && !error ? (
              <tr>
                <td colSpan={8} className="empty">
                  Nothing matches these filters.
                </td>
              </tr>
            ) : null}
          </tbody>
        </table>
      </main>
      <DecisionLog log={log} />
      <EditCorrectionDialog
        open={editing !== null}
        initial={typeof editing?.value === 'string' ? editing.value : ''}
        onClose={() => setEditing(null)}
        onSave={async (text, note) => {
          if (!editing) return;
          const res = await decide([{ action: 'edit', feedback_id: editing.id, text, note: note || undefined }]);
          setEditing(null);
          if (res) patchRows(res.results.flatMap((x) => (x.ok ? [x.feedback] : [])));
        }}
      />
    </div>
  );
}

function FeedbackCells({ item }: { item: AdminFeedbackInboxItem }) {
  return (
    <>
      <td>
        <span className={`kind kind-${item.kind}`}>{item.kind}</span>
      </td>
      <td className="clip value" title={item.comment ?? undefined}>
        {feedbackValueText(item.kind, item.value)}
        {item.choice_index !== null ? <span className="muted small"> · choice {item.choice_index}</span> : null}
        {item.comment ? <span className="muted small"> · “{item.comment}”</span> : null}
      </td>
      <td className="clip preview">
        <a href={`#/c/${encodeURIComponent(item.completion_id)}`} className="mono small" title={item.completion_id} tabIndex={-1}>
          {shortId(item.completion_id)}
        </a>{' '}
        <span className="muted">{item.completion_preview ?? '(completion not stored yet)'}</span>
      </td>
    </>
  );
}

function CompletionCells({ item }: { item: AdminCompletionSummary }) {
  return (
    <>
      <td>
        <span className={`outcome outcome-${item.outcome}`}>{item.outcome}</span>
        {item.flagged ? (
          <span className="flag" title="flagged" aria-label="flagged">
            {' '}
            ⚑
          </span>
        ) : null}
      </td>
      <td className="clip preview">
        <a href={`#/c/${encodeURIComponent(item.id)}`} className="mono small" title={item.id} tabIndex={-1}>
          {shortId(item.id)}
        </a>{' '}
        <span className="muted">{item.preview}</span>
      </td>
      <td className="num">{item.choice_count}</td>
      <td className="num">{item.feedback_count}</td>
    </>
  );
}

/** Every decision sent from this browser tab, newest first: the audit panel of the session. */
export function DecisionLog({ log }: { log: DecisionLogEntry[] }) {
  return (
    <aside className="side" aria-labelledby="decisions-title">
      <h2 id="decisions-title">Decisions this session</h2>
      {log.length === 0 ? <p className="muted small">None yet. Press ? for shortcuts.</p> : null}
      <ol className="audit">
        {log.map((e, i) => (
          <li key={i} className={e.ok ? '' : 'failed'}>
            <span className={`act act-${e.action}`}>{e.action}</span> <span className="mono small">{shortId(e.target)}</span>
            <div className="muted small">
              {shortTime(e.at)} · {e.detail}
            </div>
          </li>
        ))}
      </ol>
    </aside>
  );
}
