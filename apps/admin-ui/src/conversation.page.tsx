/**
 * One completion in full: the prompt, every choice with its moderation verdict and feedback, the reward
 * score, a side-by-side pick of the better of two choices, a ranking of three or more (choice-ranking.tsx), and
 * the completion's audit trail. Decisions act on its feedback (one, or the checked ones) with the inbox's shortcuts;
 * Esc goes back. The prompt and each choice carry a moderation label control (moderation-label.tsx).
 */
import { useCallback, useEffect, useMemo, useState } from 'react';
import type { AdminCompletionDetail, AdminFeedback, AdminReviewAction } from '../../../libs/contracts/src/admin.schemas';
import { completionModerationSchema, type CompletionModeration } from '../../../libs/contracts/src/completion-record.schemas';
import { AdminApiError, adminApi } from './admin-api.client';
import { MessageView } from './message-view';
import { ModerationLabelControl, type ModerationDecision } from './moderation-label';
import { go } from './navigation';
import { feedbackValueText, shortId, shortTime } from './format';
import { ReviewStatusBadge } from './status-badges';
import { EditCorrectionDialog, useReview, useShortcuts } from './review.context';
import { ChoiceRanking } from './choice-ranking';

type OutputVerdict = CompletionModeration['output'][number];
type InputVerdict = NonNullable<CompletionModeration['input']>;

export function ConversationPage({ id }: { id: string }) {
  const { decide, notify, onUnauthorized } = useReview();
  const [detail, setDetail] = useState<AdminCompletionDetail | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [focus, setFocus] = useState(0);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [editing, setEditing] = useState<AdminFeedback | null>(null);
  const [pair, setPair] = useState<[number, number]>([0, 1]);

  const load = useCallback(async () => {
    try {
      setDetail(await adminApi.completion(id));
      setError(null);
    } catch (err) {
      if (err instanceof AdminApiError && err.status === 401) onUnauthorized();
      setError(err instanceof Error ? err.message : String(err));
    }
  }, [id, onUnauthorized]);

  useEffect(() => {
    void load();
  }, [load]);

  const moderation = useMemo(() => {
    const parsed = completionModerationSchema.safeParse(detail?.moderation);
    return parsed.success ? parsed.data : null;
  }, [detail]);

  // Feedback in reading order: per choice, then on the whole completion; j/k walk this list.
  const ordered = useMemo(() => {
    if (!detail) return [];
    const byChoice = [...detail.choices.map((c) => detail.feedback.filter((f) => f.choice_index === c.index))];
    const general = detail.feedback.filter((f) => f.choice_index === null || !detail.choices.some((c) => c.index === f.choice_index));
    return [...byChoice.flat(), ...general];
  }, [detail]);
  const current = ordered[focus];

  async function decideOn(action: 'approve' | 'reject' | 'reset') {
    const ids = selected.size > 0 ? [...selected] : current ? [current.id] : [];
    if (ids.length === 0) return notify('No feedback on this completion to decide on.', 'error');
    const res = await decide(ids.map((feedback_id): AdminReviewAction => ({ action, feedback_id })));
    if (!res) return;
    setSelected(new Set());
    await load();
  }

  async function choose(chosen: number, rejected: number) {
    if (!detail || chosen === rejected) return;
    const res = await decide([{ action: 'choose', completion_id: detail.id, chosen, rejected }]);
    if (res) await load();
  }

  async function rank(order: number[]): Promise<boolean> {
    if (!detail) return false;
    const res = await decide([{ action: 'rank', completion_id: detail.id, order }]);
    if (!res || res.failed > 0) return false;
    await load();
    return true;
  }

  function toggle(fid: string) {
    setSelected((s) => {
      const n = new Set(s);
      if (n.has(fid)) n.delete(fid);
      else n.add(fid);
      return n;
    });
  }

  function moveFocus(delta: number) {
    setFocus((f) => {
      const next = Math.max(0, Math.min(ordered.length - 1, f + delta));
      window.requestAnimationFrame(() => {
        const el = document.querySelector<HTMLElement>(`[data-feedback-index="${next}"]`);
        el?.focus();
        el?.scrollIntoView({ block: 'nearest' });
      });
      return next;
    });
  }

  useShortcuts({
    j: () => moveFocus(1),
    k: () => moveFocus(-1),
    x: () => current && toggle(current.id),
    a: () => void decideOn('approve'),
    r: () => void decideOn('reject'),
    u: () => void decideOn('reset'),
    e: () => (current?.kind === 'correction' ? setEditing(current) : notify('Only a correction can be edited.', 'error')),
    '1': () => void choose(pair[0], pair[1]),
    '2': () => void choose(pair[1], pair[0]),
    Escape: () => go('#/inbox'),
  });

  if (error) {
    return (
      <main className="main pad">
        <a href="#/inbox">← Inbox</a>
        <p role="alert" className="error-text">
          {error}
        </p>
      </main>
    );
  }
  if (!detail) return <p className="muted pad">Loading {id}…</p>;

  const feedbackIndex = (f: AdminFeedback) => ordered.findIndex((o) => o.id === f.id);
  const renderFeedback = (list: AdminFeedback[]) =>
    list.length === 0 ? (
      <p className="muted small">No feedback.</p>
    ) : (
      <ul className="feedback-list">
        {list.map((f) => {
          const i = feedbackIndex(f);
          return (
            <li
              key={f.id}
              data-feedback-index={i}
              data-id={f.id}
              tabIndex={i === focus ? 0 : -1}
              className={`${i === focus ? 'cursor' : ''} ${selected.has(f.id) ? 'selected' : ''}`}
              onClick={() => setFocus(i)}
              aria-label={`${f.kind} feedback, ${f.review_status}`}
            >
              <input type="checkbox" aria-label={`Select feedback ${f.id}`} checked={selected.has(f.id)} onChange={() => toggle(f.id)} />
              <ReviewStatusBadge status={f.review_status} />
              <span className={`kind kind-${f.kind}`}>{f.kind}</span>
              <span className={f.kind === 'correction' ? 'value pre' : 'value'}>{feedbackValueText(f.kind, f.value)}</span>
              {f.comment ? <span className="muted small">“{f.comment}”</span> : null}
              <span className="muted small nowrap" title={f.created_at}>
                {f.source} · {f.author ?? f.key_id} · {shortTime(f.created_at)}
              </span>
              <span className="actions">
                <button type="button" onClick={() => void decide([{ action: 'approve', feedback_id: f.id }]).then(load)} aria-label={`Approve ${f.id}`}>
                  ✓
                </button>
                <button type="button" onClick={() => void decide([{ action: 'reject', feedback_id: f.id }]).then(load)} aria-label={`Reject ${f.id}`}>
                  ✕
                </button>
                {f.kind === 'correction' ? (
                  <button type="button" onClick={() => setEditing(f)} aria-label={`Edit correction ${f.id}`}>
                    ✎
                  </button>
                ) : null}
              </span>
            </li>
          );
        })}
      </ul>
    );

  const general = detail.feedback.filter((f) => f.choice_index === null || !detail.choices.some((c) => c.index === f.choice_index));
  const indices = detail.choices.map((c) => c.index);
  // A ranking orders every choice of one prompt; with two, the pick above is the ranking.
  const rankable = detail.choices.length >= 3 && new Set(detail.choices.map((c) => c.prompt_index)).size === 1;
  // The input check covers the whole prompt (every message or string prompt), so each prompt text shows its verdict.
  const inputDecision = decisionOf(moderation?.input);
  const lastUser = (detail.messages ?? []).map((m) => m.role).lastIndexOf('user');
  const promptCount = detail.prompts?.length ?? 0;
  const labelControl = (name: string, target: 'prompt' | 'choice', index: number, decision: ModerationDecision | null) => (
    <ModerationLabelControl
      completionId={detail.id}
      subject={{ name, target, choiceIndex: target === 'choice' ? index : null, promptIndex: target === 'prompt' ? index : null }}
      decision={decision}
      labels={detail.moderation_labels}
      onSaved={load}
    />
  );

  return (
    <div className="layout">
      <main className="main conversation" aria-labelledby="conv-title">
        <div className="conv-head">
          <a href="#/inbox" className="back">
            ← Inbox <kbd>Esc</kbd>
          </a>
          <h1 id="conv-title" className="mono">
            {detail.id}
          </h1>
          <ReviewStatusBadge status={detail.review_status} />
          {detail.flagged ? <span className="badge badge-flagged">flagged</span> : null}
        </div>
        <dl className="facts">
          <div>
            <dt>Created</dt>
            <dd title={detail.created_at}>{shortTime(detail.created_at)}</dd>
          </div>
          <div>
            <dt>Model</dt>
            <dd>{detail.model}</dd>
          </div>
          <div>
            <dt>Policy</dt>
            <dd className="mono">{detail.policy_version}</dd>
          </div>
          <div>
            <dt>Outcome</dt>
            <dd>
              <span className={`outcome outcome-${detail.outcome}`}>{detail.outcome}</span>
              {detail.error ? ` · ${detail.error.message}` : ''}
            </dd>
          </div>
          <div>
            <dt>Reward</dt>
            <dd>{detail.reward_score === null ? <span className="muted">not scored</span> : detail.reward_score.toFixed(3)}</dd>
          </div>
          <div>
            <dt>Tokens</dt>
            <dd>
              {detail.usage.prompt_tokens} + {detail.usage.completion_tokens}
            </dd>
          </div>
          <div>
            <dt>Latency</dt>
            <dd>
              TTFT {detail.latencies.ttft_ms === null ? '–' : `${detail.latencies.ttft_ms.toFixed(0)} ms`} · e2e {detail.latencies.e2e_ms.toFixed(0)} ms
            </dd>
          </div>
          <div>
            <dt>Caller</dt>
            <dd className="mono small">
              {detail.key_id}
              {detail.end_user ? ` · ${detail.end_user}` : ''}
            </dd>
          </div>
        </dl>

        <section aria-labelledby="prompt-title" className="panel">
          <h2 id="prompt-title">Prompt</h2>
          {detail.messages
            ? detail.messages.map((m, i) => (
                <div key={i} className={`msg msg-${m.role}`}>
                  <span className="role">{m.role}</span>
                  <div>
                    <MessageView text={m.content} />
                    {m.role === 'user' && m.content.trim() !== '' ? labelControl(i === lastUser ? 'prompt' : `message ${i}`, 'prompt', i, inputDecision) : null}
                  </div>
                </div>
              ))
            : (detail.prompts ?? []).map((p, i) => (
                <div key={i} className="msg msg-user">
                  <span className="role">prompt {i}</span>
                  <div>
                    <p className="pre">{typeof p === 'string' ? p : `[${p.length} token ids] ${p.slice(0, 32).join(' ')}`}</p>
                    {typeof p === 'string' && p.trim() !== '' ? labelControl(promptCount === 1 ? 'prompt' : `prompt ${i}`, 'prompt', i, inputDecision) : null}
                  </div>
                </div>
              ))}
          {moderation?.input ? <InputModeration verdict={moderation.input} /> : null}
        </section>

        {detail.choices.length >= 2 ? (
          <section className="panel compare" aria-labelledby="compare-title">
            <h2 id="compare-title">Pick the better choice</h2>
            <label>
              A
              <select value={pair[0]} onChange={(e) => setPair([Number(e.target.value), pair[1]])}>
                {indices.map((i) => (
                  <option key={i} value={i}>
                    #{i}
                  </option>
                ))}
              </select>
            </label>
            <label>
              B
              <select value={pair[1]} onChange={(e) => setPair([pair[0], Number(e.target.value)])}>
                {indices.map((i) => (
                  <option key={i} value={i}>
                    #{i}
                  </option>
                ))}
              </select>
            </label>
            <button type="button" disabled={pair[0] === pair[1]} onClick={() => void choose(pair[0], pair[1])}>
              #{pair[0]} is better <kbd>1</kbd>
            </button>
            <button type="button" disabled={pair[0] === pair[1]} onClick={() => void choose(pair[1], pair[0])}>
              #{pair[1]} is better <kbd>2</kbd>
            </button>
          </section>
        ) : null}

        {rankable ? <ChoiceRanking key={detail.id} choices={detail.choices} onSubmit={rank} /> : null}

        <div className={detail.choices.length >= 2 ? 'choices two' : 'choices'}>
          {detail.choices.map((c) => {
            const verdict = moderation?.output.find((o) => o.index === c.index);
            return (
              <section key={c.index} className="panel choice" aria-label={`Choice ${c.index}`}>
                <header className="choice-head">
                  <h2>Choice #{c.index}</h2>
                  <span className="muted small">
                    {c.finish_reason ?? 'unfinished'} · {c.token_count} tokens
                  </span>
                  {verdict ? <ActionBadge action={verdict.action} /> : null}
                </header>
                <MessageView text={c.text} className="pre answer" />
                {verdict ? <OutputModeration verdict={verdict} /> : null}
                {c.text.trim() !== '' ? labelControl(`choice ${c.index}`, 'choice', c.index, decisionOf(verdict)) : null}
                <h3>Feedback</h3>
                {renderFeedback(detail.feedback.filter((f) => f.choice_index === c.index))}
              </section>
            );
          })}
        </div>
        {general.length > 0 ? (
          <section className="panel" aria-labelledby="general-title">
            <h2 id="general-title">Feedback on the whole completion</h2>
            {renderFeedback(general)}
          </section>
        ) : null}
      </main>

      <aside className="side" aria-labelledby="trail-title">
        <h2 id="trail-title">Audit trail</h2>
        {detail.reviews.length === 0 ? <p className="muted small">No decisions yet.</p> : null}
        <ol className="audit" aria-label="Audit trail">
          {[...detail.reviews].reverse().map((r) => (
            <li key={r.id}>
              <span className={`act act-${r.action}`}>{r.action}</span>{' '}
              <span className="small mono" title={r.target_id}>
                {r.target_type === 'feedback' ? shortId(r.target_id) : 'completion'}
              </span>{' '}
              <span className="small">
                {r.from_status} → {r.to_status}
              </span>
              <div className="muted small">
                {r.actor} · <span title={r.created_at}>{shortTime(r.created_at)}</span>
              </div>
              {r.note ? <div className="small">“{r.note}”</div> : null}
              {r.action === 'edit' ? (
                <details className="small">
                  <summary>before / after</summary>
                  <pre className="pre mono">{JSON.stringify({ before: r.before, after: r.after }, null, 1)}</pre>
                </details>
              ) : null}
            </li>
          ))}
        </ol>
      </aside>

      <EditCorrectionDialog
        open={editing !== null}
        initial={typeof editing?.value === 'string' ? editing.value : ''}
        onClose={() => setEditing(null)}
        onSave={async (text, note) => {
          if (!editing) return;
          await decide([{ action: 'edit', feedback_id: editing.id, text, note: note || undefined }]);
          setEditing(null);
          await load();
        }}
      />
    </div>
  );
}

/** A verdict reduced to what the label control shows (PII stays with the verdict's own panel). */
function decisionOf(verdict: InputVerdict | OutputVerdict | null | undefined): ModerationDecision | null {
  if (!verdict) return null;
  const categories = [...new Set([...verdict.blockedCategories, ...verdict.flaggedCategories])].filter((c) => c !== 'pii');
  return { action: verdict.action, categories };
}

function ActionBadge({ action }: { action: 'allow' | 'flag' | 'block' }) {
  return <span className={`badge mod-${action}`}>moderation: {action}</span>;
}

/** The highest category scores, so a reviewer sees why without reading all 15. */
function TopScores({ scores }: { scores: Partial<Record<string, number>> }) {
  const top = Object.entries(scores)
    .filter((e): e is [string, number] => typeof e[1] === 'number')
    .sort((a, b) => b[1] - a[1])
    .slice(0, 4);
  if (top.length === 0) return null;
  return (
    <ul className="scores" aria-label="Top moderation scores">
      {top.map(([cat, s]) => (
        <li key={cat}>
          <span className="small">{cat}</span>
          <meter min={0} max={1} value={s} aria-label={`${cat} score`} />
          <span className="mono small">{s.toFixed(2)}</span>
        </li>
      ))}
    </ul>
  );
}

function InputModeration({ verdict }: { verdict: InputVerdict }) {
  return (
    <div className="moderation">
      <ActionBadge action={verdict.action} /> <span className="muted small">input check ({verdict.source})</span>
      {verdict.flaggedCategories.length + verdict.blockedCategories.length > 0 ? (
        <span className="small"> · {[...verdict.blockedCategories, ...verdict.flaggedCategories].join(', ')}</span>
      ) : null}
      <TopScores scores={verdict.scores} />
    </div>
  );
}

function OutputModeration({ verdict }: { verdict: OutputVerdict }) {
  return (
    <div className="moderation">
      {verdict.cutOffset !== null ? (
        <p className="small error-text">
          Cut at character {verdict.cutOffset} of {verdict.generatedChars}
        </p>
      ) : null}
      {verdict.flaggedCategories.length + verdict.blockedCategories.length > 0 ? (
        <p className="small">{[...verdict.blockedCategories, ...verdict.flaggedCategories].join(', ')}</p>
      ) : null}
      {verdict.pii.length > 0 ? <p className="small">PII: {verdict.pii.map((p) => p.type).join(', ')}</p> : null}
      <TopScores scores={verdict.scores} />
    </div>
  );
}
