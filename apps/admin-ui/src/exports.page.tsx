/**
 * Exports as JSONL: approved feedback for TRL / OpenRLHF (SFT, preference, KTO), reviewers' moderation labels
 * for the moderation classifier (`moderation`), and the RL prompt set from live traffic (`prompts`). Create one
 * with optional filters, then download it from the list of every export made (newest first). The gateway writes
 * and records the file; this page only asks and links.
 */
import { useCallback, useEffect, useState } from 'react';
import { EXPORT_FORMATS, type AdminExport, type ExportFormat } from '../../../libs/contracts/src/admin.schemas';
import { AdminApiError, adminApi } from './admin-api.client';
import { bytes, dayEndIso, dayStartIso, shortTime } from './format';
import { useReview } from './review.context';

/**
 * What makes a line of each format (libs/store/src/export.lines.ts decides; `moderation`: libs/store/src/moderation-labels.ts;
 * `prompts`: libs/store/src/export.prompts.ts).
 */
const FORMAT_HELP: Record<ExportFormat, string> = {
  sft: '{"messages"}: corrections (the corrected text), thumbs up and ratings ≥ 4',
  preference: '{"prompt", "chosen", "rejected"}: preferences, users\' and reviewers\' picks, corrections (chosen over the original), rankings (every better-worse pair)',
  kto: '{"prompt", "completion", "label"}: thumbs, ratings (≥ 4 true, ≤ 2 false), corrections (true), rankings (top true, bottom false)',
  moderation: '{"text", "direction", "categories", "source", "overturned"}: reviewers\' moderation labels and approved flags',
  prompts: '{"prompt"}: each distinct prompt of live traffic (no approval needed; flagged unless cleared, harmful and PII left out), the RL prompt set',
};

export function ExportsPage() {
  const { notify, onUnauthorized } = useReview();
  const [list, setList] = useState<AdminExport[] | null>(null);
  const [format, setFormat] = useState<ExportFormat>('sft');
  const [policyVersion, setPolicyVersion] = useState('');
  const [fromDay, setFromDay] = useState('');
  const [toDay, setToDay] = useState('');
  const [versions, setVersions] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);

  const load = useCallback(async () => {
    try {
      setList(await adminApi.exports());
    } catch (err) {
      if (err instanceof AdminApiError && err.status === 401) onUnauthorized();
      notify(err instanceof Error ? err.message : String(err), 'error');
    }
  }, [notify, onUnauthorized]);

  useEffect(() => {
    void load();
    adminApi.policyVersions().then(setVersions, () => undefined);
  }, [load]);

  return (
    <main className="main pad narrow" aria-labelledby="exports-title">
      <h1 id="exports-title">Exports</h1>
      <form
        className="panel export-form"
        aria-label="New export"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          try {
            const made = await adminApi.createExport({
              format,
              filters: {
                policy_version: policyVersion || undefined,
                from: dayStartIso(fromDay),
                to: dayEndIso(toDay),
              },
            });
            notify(`Export ${made.format}: ${made.row_count} ${made.row_count === 1 ? 'row' : 'rows'}`, 'ok');
            await load();
          } catch (err) {
            if (err instanceof AdminApiError && err.status === 401) onUnauthorized();
            notify(err instanceof Error ? err.message : String(err), 'error');
          } finally {
            setBusy(false);
          }
        }}
      >
        <fieldset className="formats">
          <legend>Format</legend>
          {EXPORT_FORMATS.map((f) => (
            <label key={f} className="radio">
              <input type="radio" name="format" value={f} checked={format === f} onChange={() => setFormat(f)} />
              <strong>{f.toUpperCase()}</strong> <span className="muted small">{FORMAT_HELP[f]}</span>
            </label>
          ))}
        </fieldset>
        <div className="row">
          <label>
            Policy
            <select value={policyVersion} onChange={(e) => setPolicyVersion(e.target.value)}>
              <option value="">any</option>
              {versions.map((v) => (
                <option key={v}>{v}</option>
              ))}
            </select>
          </label>
          <label>
            From
            <input type="date" value={fromDay} onChange={(e) => setFromDay(e.target.value)} />
          </label>
          <label>
            To
            <input type="date" value={toDay} onChange={(e) => setToDay(e.target.value)} />
          </label>
          <span className="spacer" />
          <button type="submit" className="primary" disabled={busy}>
            {busy ? 'Exporting…' : 'Create export'}
          </button>
        </div>
      </form>

      <table className="grid" aria-label="Exports">
        <thead>
          <tr>
            <th scope="col">Created</th>
            <th scope="col">Format</th>
            <th scope="col">Filters</th>
            <th scope="col" className="num">
              Rows
            </th>
            <th scope="col" className="num">
              Size
            </th>
            <th scope="col">sha256</th>
            <th scope="col">By</th>
            <th scope="col">File</th>
          </tr>
        </thead>
        <tbody>
          {(list ?? []).map((x) => (
            <tr key={x.id} data-id={x.id}>
              <td className="nowrap small" title={x.created_at}>
                {shortTime(x.created_at)}
              </td>
              <td>
                <span className="kind">{x.format}</span>
              </td>
              <td className="small">
                {[
                  x.filters.policy_version && `policy ${x.filters.policy_version}`,
                  x.filters.from && `from ${x.filters.from.slice(0, 10)}`,
                  x.filters.to && `to ${x.filters.to.slice(0, 10)}`,
                ]
                  .filter(Boolean)
                  .join(' · ') || <span className="muted">all approved</span>}
              </td>
              <td className="num">{x.row_count}</td>
              <td className="num">{bytes(x.bytes)}</td>
              <td className="mono small" title={x.sha256}>
                {x.sha256.slice(0, 12)}
              </td>
              <td className="mono small">{x.created_by}</td>
              <td>
                <a href={x.download_url} download={`flywheel-${x.format}-${x.id}.jsonl`} aria-label={`Download ${x.format} export ${x.id}`}>
                  Download
                </a>
              </td>
            </tr>
          ))}
          {list && list.length === 0 ? (
            <tr>
              <td colSpan={8} className="empty">
                No exports yet.
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>
    </main>
  );
}
