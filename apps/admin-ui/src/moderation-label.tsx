/**
 * The conversation view's "Moderation" control for one text (a prompt message or a choice): what moderation decided
 * on it, the reviewer's current label, and the two ways to label it, "Harmful…" (pick categories) and "Not harmful".
 * A label is training data for the moderation classifier (POST /admin/api/moderation-labels); whether it overturns
 * moderation is the gateway's call, shown as it answers. Not the feedback review of the same page.
 */
import { useId, useState } from 'react';
import { LABEL_CATEGORIES, type LabelCategory, type ModerationLabel, type ModerationLabelVerdict } from '../../../libs/contracts/src/moderation-labels.schemas';
import { AdminApiError, adminApi } from './admin-api.client';
import { shortTime } from './format';
import { useReview } from './review.context';

/** Which text a label is on, in the API's terms, and how buttons and notices name it ("prompt", "message 2", "choice 0"). */
export interface LabelSubject {
  name: string;
  target: ModerationLabel['target'];
  choiceIndex: number | null;
  /** Chat: index into the conversation's messages; completions: into its prompts; null for a choice. */
  promptIndex: number | null;
}

/** What moderation decided on the text: null when the record carries no verdict for it. */
export interface ModerationDecision {
  action: 'allow' | 'flag' | 'block';
  /** Blocked, then flagged categories, as the record lists them. */
  categories: string[];
}

/** The label in force on the subject: the latest, since a later label on the same text replaces an earlier one. */
export function currentLabel(labels: readonly ModerationLabel[], s: LabelSubject): ModerationLabel | null {
  const on = labels.filter((l) => l.target === s.target && (s.target === 'choice' ? l.choice_index === s.choiceIndex : l.prompt_index === s.promptIndex));
  return on[on.length - 1] ?? null;
}

const isLabelCategory = (c: string): c is LabelCategory => (LABEL_CATEGORIES as readonly string[]).includes(c);

export function ModerationLabelControl({
  completionId,
  subject,
  decision,
  labels,
  onSaved,
}: {
  completionId: string;
  subject: LabelSubject;
  decision: ModerationDecision | null;
  labels: readonly ModerationLabel[];
  onSaved(): Promise<void>;
}) {
  const { notify, onUnauthorized } = useReview();
  const label = currentLabel(labels, subject);
  const [picking, setPicking] = useState(false);
  const [picked, setPicked] = useState<Set<LabelCategory>>(new Set());
  const [busy, setBusy] = useState(false);
  const pickerId = useId();

  function openPicker() {
    // Start from the reviewer's harmful label, else from what moderation saw: confirming it is the common case.
    const start = label?.verdict === 'harmful' ? label.categories : (decision?.categories ?? []).filter(isLabelCategory);
    setPicked(new Set(start));
    setPicking(true);
  }

  function toggle(c: LabelCategory) {
    setPicked((p) => {
      const n = new Set(p);
      if (n.has(c)) n.delete(c);
      else n.add(c);
      return n;
    });
  }

  async function save(verdict: ModerationLabelVerdict, categories: LabelCategory[]) {
    setBusy(true);
    try {
      const saved = await adminApi.moderationLabel({
        completion_id: completionId,
        target: subject.target,
        choice_index: subject.choiceIndex,
        prompt_index: subject.promptIndex,
        verdict,
        categories,
      });
      setPicking(false);
      const what = saved.verdict === 'harmful' ? `harmful (${saved.categories.join(', ')})` : 'not harmful';
      notify(`Labelled ${subject.name} ${what}${saved.overturns ? ': overturns moderation' : ''}`, 'ok');
      await onSaved();
    } catch (err) {
      if (err instanceof AdminApiError && err.status === 401) onUnauthorized();
      notify(err instanceof Error ? err.message : String(err), 'error');
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="mod-label" role="group" aria-label={`Moderation of ${subject.name}`}>
      <div className="row">
        <span className="tool-label">Moderation</span>
        {decision ? (
          <span className="small">
            <span className={`badge mod-${decision.action}`}>{decision.action}</span>
            {decision.categories.length > 0 ? ` ${decision.categories.join(', ')}` : null}
          </span>
        ) : (
          <span className="muted small">not checked</span>
        )}
        <span className="small">
          {label ? (
            <>
              Reviewer{' '}
              <span className={`badge ${label.verdict === 'harmful' ? 'badge-rejected' : 'badge-approved'}`}>
                {label.verdict === 'harmful' ? `harmful: ${label.categories.join(', ')}` : 'not harmful'}
              </span>
              {label.overturns ? (
                <>
                  {' '}
                  <span className="badge badge-flagged">overturns moderation</span>
                </>
              ) : null}{' '}
              <span className="muted" title={label.created_at}>
                {label.actor} · {shortTime(label.created_at)}
              </span>
            </>
          ) : (
            <span className="muted">no reviewer label</span>
          )}
        </span>
        <span className="spacer" />
        <button
          type="button"
          disabled={busy}
          aria-expanded={picking}
          aria-controls={pickerId}
          aria-label={`Mark ${subject.name} harmful`}
          onClick={() => (picking ? setPicking(false) : openPicker())}
        >
          Harmful…
        </button>
        <button type="button" disabled={busy} aria-label={`Mark ${subject.name} not harmful`} onClick={() => void save('not_harmful', [])}>
          Not harmful
        </button>
      </div>
      {picking ? (
        <form
          id={pickerId}
          className="mod-picker"
          onSubmit={(e) => {
            e.preventDefault();
            if (picked.size > 0) void save('harmful', LABEL_CATEGORIES.filter((c) => picked.has(c)));
          }}
        >
          <fieldset>
            <legend className="small">Harmful in (at least one)</legend>
            {LABEL_CATEGORIES.map((c) => (
              <label key={c} className="check">
                <input type="checkbox" checked={picked.has(c)} onChange={() => toggle(c)} />
                {c}
              </label>
            ))}
          </fieldset>
          <div className="row end">
            <button type="button" onClick={() => setPicking(false)}>
              Cancel
            </button>
            <button type="submit" className="primary" disabled={busy || picked.size === 0} aria-label={`Save harmful label on ${subject.name}`}>
              Save
            </button>
          </div>
        </form>
      ) : null}
    </div>
  );
}
