/**
 * Model versions of each role (policy, reward, moderation): what is published to the checkpoint store, which one
 * the replicas serve, and the two buttons of the flywheel's last step, Promote and Roll back (each one write to the
 * `models` KV; the replicas hot-swap on it). Lineage (parent, run, exports) as published, and for policy versions
 * the eval gate's evidence (gain, KL to the version it replaced and to the original base, the verdict and its
 * reasons), and the reviewers' blind A/B verdicts on it (ab.page.tsx). The moderation role also starts a retraining
 * on the reviewers' labels. No charts here.
 */
import { useCallback, useEffect, useRef, useState } from 'react';
import type { AdminAbSummary } from '../../../libs/contracts/src/admin.schemas';
import { MODEL_ROLES, type ModelRole, type ModelVersionList, type ModerationGate, type VersionGate } from '../../../libs/contracts/src/model-versions.schemas';
import { AbDecisionBadge, abSummaryText } from './ab-summary';
import { AdminApiError, adminApi } from './admin-api.client';
import { bytes, shortTime } from './format';
import { useReview } from './review.context';

const ROLE_NAMES: Record<ModelRole, string> = { policy: 'Policy', reward: 'Reward', moderation: 'Moderation' };

export function ModelsPage() {
  const { notify, onUnauthorized } = useReview();
  const [role, setRole] = useState<ModelRole>('policy');
  const shownRole = useRef(role);
  shownRole.current = role;
  const [list, setList] = useState<ModelVersionList | null>(null);
  const [ab, setAb] = useState<Map<string, AdminAbSummary>>(new Map());
  const [busy, setBusy] = useState(false);

  const fail = useCallback(
    (err: unknown) => {
      if (err instanceof AdminApiError && err.status === 401) onUnauthorized();
      notify(err instanceof Error ? err.message : String(err), 'error');
    },
    [notify, onUnauthorized],
  );
  const load = useCallback(async () => {
    try {
      const next = await adminApi.models(role);
      // A slow answer for a role switched away from must not replace the one now shown.
      if (shownRole.current === role) setList(next);
      // The A/B verdicts beside the gate: one small query; the page stands without it.
      if (role === 'policy') {
        const summaries = await adminApi.abSummary().catch(() => []);
        setAb(new Map(summaries.map((s) => [s.candidate_version, s])));
      }
    } catch (err) {
      fail(err);
    }
  }, [fail, role]);
  useEffect(() => {
    setList(null);
    void load();
  }, [load]);

  const act = async (what: () => Promise<{ version: string }>, done: (v: string) => string) => {
    setBusy(true);
    try {
      notify(done((await what()).version), 'ok');
      await load();
    } catch (err) {
      fail(err);
    } finally {
      setBusy(false);
    }
  };

  const retrain = async () => {
    setBusy(true);
    try {
      const started = await adminApi.trainModeration();
      notify(`Queued job ${started.job_id}: moderation-train run ${started.run_id} on ${started.rows} ${started.rows === 1 ? 'row' : 'rows'}`, 'ok');
    } catch (err) {
      fail(err);
    } finally {
      setBusy(false);
    }
  };
  const gated = role === 'policy';

  return (
    <main className="main pad narrow" aria-labelledby="models-title">
      <h1 id="models-title">Models</h1>
      <div className="row models-bar">
        <div className="segmented" role="group" aria-label="Role">
          {MODEL_ROLES.map((r) => (
            <button key={r} type="button" aria-pressed={role === r} className={role === r ? 'on' : ''} onClick={() => setRole(r)}>
              {ROLE_NAMES[r]}
            </button>
          ))}
        </div>
        <span className="spacer" />
        {role === 'moderation' ? (
          <button type="button" disabled={busy} title="export the reviewers' moderation labels and queue a moderation-train job" onClick={() => void retrain()}>
            Retrain moderation now
          </button>
        ) : null}
      </div>
      <div className="panel row">
        <span>
          Serving <strong className="mono">{list?.active ?? '—'}</strong>
          {list?.activeEntry ? (
            <span className="muted small">
              {' '}
              since {shortTime(list.activeEntry.promotedAt)} by {list.activeEntry.promotedBy} ({list.activeEntry.reason})
            </span>
          ) : null}
        </span>
        <span className="spacer" />
        <button
          type="button"
          disabled={busy || !list?.previous}
          title={list?.previous ? `back to ${list.previous}` : 'nothing to roll back to'}
          onClick={() => act(() => adminApi.rollbackModel(role), (v) => `Rolled back to ${v}`)}
        >
          Roll back{list?.previous ? ` to ${list.previous}` : ''}
        </button>
      </div>
      <table className="grid" aria-label={`${ROLE_NAMES[role]} versions`}>
        <thead>
          <tr>
            <th scope="col">Version</th>
            <th scope="col">State</th>
            <th scope="col">Parent</th>
            <th scope="col">Run</th>
            <th scope="col">Exports</th>
            {gated ? <th scope="col">Eval gate</th> : null}
            {gated ? <th scope="col">A/B</th> : null}
            {role === 'moderation' ? <th scope="col">Held-out</th> : null}
            <th scope="col">Published</th>
            <th scope="col" className="num">
              Size
            </th>
            <th scope="col">sha256</th>
            <th scope="col" />
          </tr>
        </thead>
        <tbody>
          {(list?.versions ?? [])
            .slice()
            .reverse()
            .map((v) => (
              <tr key={v.version} data-version={v.version}>
                <td className="mono">{v.version}</td>
                <td>
                  <span className="kind">{v.state}</span>
                </td>
                <td className="mono small">{v.parent ?? <span className="muted">—</span>}</td>
                <td className="mono small">{v.runId ?? <span className="muted">—</span>}</td>
                <td className="mono small">{v.exports.join(', ') || <span className="muted">—</span>}</td>
                {gated ? (
                  <td className="small" aria-label={`Eval gate of ${v.version}`}>
                    <GateCell gate={v.gate} />
                  </td>
                ) : null}
                {gated ? (
                  <td className="small" aria-label={`A/B of ${v.version}`}>
                    <AbCell s={ab.get(v.version)} />
                  </td>
                ) : null}
                {role === 'moderation' ? (
                  <td className="small" aria-label={`Held-out comparison of ${v.version}`}>
                    <ModerationGateCell gate={v.moderation_gate} />
                  </td>
                ) : null}
                <td className="nowrap small" title={v.publishedAt}>
                  {shortTime(v.publishedAt)}
                </td>
                <td className="num">{bytes(v.bytes)}</td>
                <td className="mono small" title={v.sha256}>
                  {v.sha256.slice(0, 12)}
                </td>
                <td>
                  {v.state === 'active' ? null : (
                    <button
                      type="button"
                      className="primary"
                      disabled={busy}
                      aria-label={`Promote ${v.version}`}
                      onClick={() => act(() => adminApi.promoteModel(v.version, role), (p) => `Promoted ${p}: replicas are swapping`)}
                    >
                      Promote
                    </button>
                  )}
                </td>
              </tr>
            ))}
          {list && list.versions.length === 0 ? (
            <tr>
              <td colSpan={gated ? 11 : role === 'moderation' ? 10 : 9} className="empty">
                No {role} versions published yet{role === 'moderation' ? ' (Retrain moderation now makes one)' : ' (npx flywheel models publish)'}.
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>
    </main>
  );
}

const num = (x: number | null | undefined, digits: number) => (x === null || x === undefined ? '—' : x.toFixed(digits));

/** The gate's verdict and the numbers it rested on; the reasons of a refusal on hover and in the text. */
/** What moderation-train found: the candidate against the version active then, on one held-out split. */
function ModerationGateCell({ gate }: { gate: ModerationGate | undefined }) {
  if (!gate) return <span className="muted">—</span>;
  const { candidate: c, active: a } = gate;
  return (
    <span title={gate.reasons.join('; ') || `vs ${a.version}`}>
      <span className={gate.pass ? 'badge badge-approved' : 'badge badge-rejected'}>{gate.promoted ? 'promoted' : gate.pass ? 'passed' : 'refused'}</span>{' '}
      macro F1 {num(a.macro_f1, 3)} → {num(c.macro_f1, 3)} · reviewed {num(a.reviewed_accuracy, 2)} → {num(c.reviewed_accuracy, 2)} · hard-benign FPR {num(c.hard_benign_fpr, 3)}
      {gate.pass ? null : <span className="muted"> — {gate.reasons.join('; ')}</span>}
    </span>
  );
}

function GateCell({ gate }: { gate: VersionGate | undefined }) {
  if (!gate) return <span className="muted">—</span>;
  return (
    <span title={gate.reasons.join('; ') || `vs ${gate.active}${gate.base ? `, base ${gate.base}` : ''} (${gate.run})`}>
      <span className={gate.pass ? 'badge badge-approved' : 'badge badge-rejected'}>{gate.pass ? 'passed' : 'refused'}</span>{' '}
      gain {num(gate.reward_gain_std, 2)}σ · KL {num(gate.kl, 2)} · to base {num(gate.kl_base, 2)}
      {gate.reward_gain_std_length_controlled != null ? <> · at equal length {num(gate.reward_gain_std_length_controlled, 2)}σ</> : null}
      {gate.independent ? (
        <span title={`reward model ${gate.independent.version}, not trained against; at equal length ${num(gate.independent.gain_std_length_controlled, 2)}σ`}>
          {' '}
          · independent {num(gate.independent.gain_std, 2)}σ
        </span>
      ) : null}
      {gate.best_of_n ? (
        <span className="muted">
          {' '}
          (best-of-{gate.best_of_n.n}: {num(gate.best_of_n.gain_std, 2)}σ at KL ≤ {num(gate.best_of_n.kl_bound, 2)})
        </span>
      ) : null}
      {gate.ab?.wait ? <span className="muted"> · promotion waits for {gate.ab.min_verdicts} A/B verdicts</span> : null}
      {gate.pass ? null : <span className="muted"> — {gate.reasons.join('; ')}</span>}
    </span>
  );
}

function AbCell({ s }: { s: AdminAbSummary | undefined }) {
  if (!s) return <span className="muted">—</span>;
  return (
    <span title={`vs ${s.active_version}: ${s.candidate_wins} wins, ${s.ties} ties, ${s.active_wins} losses`}>
      <AbDecisionBadge s={s} /> {abSummaryText(s)}
    </span>
  );
}
