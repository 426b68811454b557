/**
 * Policy model versions: what is published to the checkpoint store, which one the replicas serve, and the
 * two buttons of the flywheel's last step, Promote and Roll back (each one write to the `models` KV; the
 * replicas hot-swap on it). Lineage (parent, run, exports) as published, and the eval gate's evidence (gain, KL to
 * the version it replaced and to the original base, the verdict and its reasons). No charts here.
 */
import { useCallback, useEffect, useState } from 'react';
import type { ModelVersionList, VersionGate } from '../../../libs/contracts/src/model-versions.schemas';
import { AdminApiError, adminApi } from './admin-api.client';
import { bytes, shortTime } from './format';
import { useReview } from './review.context';

export function ModelsPage() {
  const { notify, onUnauthorized } = useReview();
  const [list, setList] = useState<ModelVersionList | null>(null);
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
      setList(await adminApi.models());
    } catch (err) {
      fail(err);
    }
  }, [fail]);
  useEffect(() => {
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

  return (
    <main className="main pad narrow" aria-labelledby="models-title">
      <h1 id="models-title">Models</h1>
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
          onClick={() => act(() => adminApi.rollbackModel(), (v) => `Rolled back to ${v}`)}
        >
          Roll back{list?.previous ? ` to ${list.previous}` : ''}
        </button>
      </div>
      <table className="grid" aria-label="Policy versions">
        <thead>
          <tr>
            <th scope="col">Version</th>
            <th scope="col">State</th>
            <th scope="col">Parent</th>
            <th scope="col">Run</th>
            <th scope="col">Exports</th>
            <th scope="col">Eval gate</th>
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
                <td className="small" aria-label={`Eval gate of ${v.version}`}>
                  <GateCell gate={v.gate} />
                </td>
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
                      onClick={() => act(() => adminApi.promoteModel(v.version), (p) => `Promoted ${p}: replicas are swapping`)}
                    >
                      Promote
                    </button>
                  )}
                </td>
              </tr>
            ))}
          {list && list.versions.length === 0 ? (
            <tr>
              <td colSpan={10} className="empty">
                No versions published yet (npx flywheel models publish).
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
function GateCell({ gate }: { gate: VersionGate | undefined }) {
  if (!gate) return <span className="muted">—</span>;
  return (
    <span title={gate.reasons.join('; ') || `vs ${gate.active}${gate.base ? `, base ${gate.base}` : ''} (${gate.run})`}>
      <span className={gate.pass ? 'badge badge-approved' : 'badge badge-rejected'}>{gate.pass ? 'passed' : 'refused'}</span>{' '}
      gain {num(gate.reward_gain_std, 2)}σ · KL {num(gate.kl, 2)} · to base {num(gate.kl_base, 2)}
      {gate.pass ? null : <span className="muted"> — {gate.reasons.join('; ')}</span>}
    </span>
  );
}
