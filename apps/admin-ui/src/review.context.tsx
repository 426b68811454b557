/**
 * What every screen shares: sending review decisions (one or many in one POST) and remembering each
 * outcome for the "decisions" audit panel, the status line (aria-live), keyboard shortcuts, and the
 * modal dialogs (shortcut help, correction editor). Not the API itself (admin-api.client.ts).
 */
import { createContext, useCallback, useContext, useEffect, useRef, useState, type ReactNode } from 'react';
import type { AdminReviewAction, AdminReviewsResponse } from '../../../libs/contracts/src/admin.schemas';
import { AdminApiError, adminApi } from './admin-api.client';

export interface DecisionLogEntry {
  at: string;
  action: AdminReviewAction['action'];
  target: string;
  ok: boolean;
  detail: string;
}

export interface Notice {
  text: string;
  tone: 'info' | 'ok' | 'error';
}

interface ReviewContextValue {
  log: DecisionLogEntry[];
  notice: Notice | null;
  notify(text: string, tone?: Notice['tone']): void;
  /** Sends the actions in one request; resolves to the server's results (null when the request failed). */
  decide(actions: AdminReviewAction[]): Promise<AdminReviewsResponse | null>;
  onUnauthorized(): void;
}

const ReviewContext = createContext<ReviewContextValue | null>(null);

export function useReview(): ReviewContextValue {
  const v = useContext(ReviewContext);
  if (!v) throw new Error('useReview outside ReviewProvider');
  return v;
}

function targetOf(a: AdminReviewAction): string {
  if ('feedback_id' in a) return a.feedback_id;
  if (a.action === 'rank') return `${a.completion_id} ${a.order.map((i) => `#${i}`).join('>')}`;
  return `${a.completion_id} #${a.chosen}>#${a.rejected}`;
}

export function ReviewProvider({ children, onUnauthorized }: { children: ReactNode; onUnauthorized(): void }) {
  const [log, setLog] = useState<DecisionLogEntry[]>([]);
  const [notice, setNotice] = useState<Notice | null>(null);
  const timer = useRef<number | undefined>(undefined);

  const notify = useCallback((text: string, tone: Notice['tone'] = 'info') => {
    setNotice({ text, tone });
    window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => setNotice(null), tone === 'error' ? 8000 : 4000);
  }, []);

  const decide = useCallback(
    async (actions: AdminReviewAction[]) => {
      if (actions.length === 0) return null;
      try {
        const res = await adminApi.review(actions);
        const at = new Date().toISOString();
        const entries = res.results.map((r): DecisionLogEntry => {
          const a = actions[r.index]!;
          return r.ok
            ? { at, action: a.action, target: targetOf(a), ok: true, detail: `${r.review.from_status} → ${r.review.to_status}` }
            : { at, action: a.action, target: targetOf(a), ok: false, detail: `${r.error.code}: ${r.error.message}` };
        });
        setLog((prev) => [...entries.reverse(), ...prev].slice(0, 200));
        const verb = actions[0]!.action;
        notify(
          res.failed === 0 ? `${verb}: ${res.applied} applied` : `${verb}: ${res.applied} applied, ${res.failed} failed`,
          res.failed === 0 ? 'ok' : 'error',
        );
        return res;
      } catch (err) {
        if (err instanceof AdminApiError && err.status === 401) onUnauthorized();
        notify(err instanceof Error ? err.message : String(err), 'error');
        return null;
      }
    },
    [notify, onUnauthorized],
  );

  return <ReviewContext.Provider value={{ log, notice, notify, decide, onUnauthorized }}>{children}</ReviewContext.Provider>;
}

/** Key → handler while `enabled`; ignores keys typed into fields and chords with Ctrl/Alt/Meta. */
export function useShortcuts(map: Record<string, (e: KeyboardEvent) => void>, enabled = true): void {
  const ref = useRef(map);
  ref.current = map;
  useEffect(() => {
    if (!enabled) return;
    const onKey = (e: KeyboardEvent) => {
      if (e.ctrlKey || e.altKey || e.metaKey || e.defaultPrevented) return;
      const t = e.target;
      if (t instanceof HTMLElement && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
      if (document.querySelector('dialog[open]')) return;
      // Enter on a button or link keeps its own meaning.
      if (e.key === 'Enter' && t instanceof HTMLElement && /^(BUTTON|A)$/.test(t.tagName)) return;
      const handler = ref.current[e.key];
      if (handler) {
        e.preventDefault();
        handler(e);
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [enabled]);
}

/** A native modal <dialog>: focus moves in, Esc closes, the page behind is inert. */
export function Modal({ title, open, onClose, children }: { title: string; open: boolean; onClose(): void; children: ReactNode }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return (
    <dialog ref={ref} className="modal" aria-label={title} onClose={onClose} onCancel={onClose}>
      <header className="modal-head">
        <h2>{title}</h2>
        <button type="button" className="ghost" aria-label="Close" onClick={onClose}>
          ✕
        </button>
      </header>
      {open ? children : null}
    </dialog>
  );
}

export const SHORTCUTS: [string, string][] = [
  ['j / k', 'next / previous item'],
  ['x', 'select or unselect the item (bulk actions apply to the selection)'],
  ['a', 'approve the selection, or the current item'],
  ['r', 'reject the selection, or the current item'],
  ['u', 'reset to pending'],
  ['e', 'edit the current correction'],
  ['Enter / o', 'open the conversation'],
  ['Esc', 'back to the inbox, or close a dialog'],
  ['/', 'search'],
  ['1 / 2 / 3', 'A/B page: A better, tie, B better (also a / t / b)'],
  ['?', 'this help'],
];

export function ShortcutHelp({ open, onClose }: { open: boolean; onClose(): void }) {
  return (
    <Modal title="Keyboard shortcuts" open={open} onClose={onClose}>
      <table className="shortcuts">
        <tbody>
          {SHORTCUTS.map(([k, what]) => (
            <tr key={k}>
              <th scope="row">
                <kbd>{k}</kbd>
              </th>
              <td>{what}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Modal>
  );
}

/** Edits a correction's text; saving sends `edit` (which also approves it). */
export function EditCorrectionDialog({
  initial,
  open,
  onClose,
  onSave,
}: {
  initial: string;
  open: boolean;
  onClose(): void;
  onSave(text: string, note: string): void;
}) {
  const [text, setText] = useState(initial);
  const [note, setNote] = useState('');
  useEffect(() => {
    if (open) {
      setText(initial);
      setNote('');
    }
  }, [open, initial]);
  return (
    <Modal title="Edit correction" open={open} onClose={onClose}>
      <form
        className="stack"
        onSubmit={(e) => {
          e.preventDefault();
          if (text.trim()) onSave(text, note);
        }}
      >
        <label>
          Corrected answer
          <textarea autoFocus rows={10} value={text} onChange={(e) => setText(e.target.value)} required />
        </label>
        <label>
          Note (optional)
          <input value={note} onChange={(e) => setNote(e.target.value)} />
        </label>
        <div className="row end">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className="primary">
            Save and approve
          </button>
        </div>
      </form>
    </Modal>
  );
}
