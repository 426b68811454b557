/**
 * The review dashboard from GET /admin/api/stats, drawn with Recharts: feedback volume over time by
 * kind, approval rate, rating distribution, the same per policy version, and how well reviewers and
 * raters agree (Krippendorff's α). The numbers come from the API as they are; this page only picks the
 * range and draws.
 */
import { useEffect, useMemo, useState } from 'react';
import {
  Bar,
  BarChart,
  CartesianGrid,
  Cell,
  Legend,
  Pie,
  PieChart,
  ResponsiveContainer,
  Tooltip,
  XAxis,
  YAxis,
} from 'recharts';
import type { AdminAgreement, AdminStats, StatsBucket } from '../../../libs/contracts/src/admin.schemas';
import { FEEDBACK_KINDS } from '../../../libs/contracts/src/feedback.schemas';
import { AdminApiError, adminApi } from './admin-api.client';
import { percent } from './format';
import { useReview } from './review.context';

/** One hue per feedback kind and per status; chosen to stay apart for common colour blindness. */
const KIND_COLOURS: Record<(typeof FEEDBACK_KINDS)[number], string> = {
  thumbs: '#4c78a8',
  rating: '#f58518',
  preference: '#54a24b',
  correction: '#b279a2',
  flag: '#e45756',
  ranking: '#72b7b2',
};
const STATUS_COLOURS = { approved: '#2e7d32', rejected: '#c62828', pending: '#9e9e9e' };
const RANGES: { label: string; bucket: StatsBucket; hours: number }[] = [
  { label: '48 hours', bucket: 'hour', hours: 48 },
  { label: '7 days', bucket: 'day', hours: 24 * 7 },
  { label: '30 days', bucket: 'day', hours: 24 * 30 },
  { label: '90 days', bucket: 'day', hours: 24 * 90 },
];

export function DashboardPage() {
  const { notify, onUnauthorized } = useReview();
  const [range, setRange] = useState(2);
  const [policyVersion, setPolicyVersion] = useState('');
  const [versions, setVersions] = useState<string[]>([]);
  const [stats, setStats] = useState<AdminStats | null>(null);

  useEffect(() => {
    adminApi.policyVersions().then(setVersions, () => undefined);
  }, []);

  useEffect(() => {
    const r = RANGES[range]!;
    const to = new Date();
    const from = new Date(to.getTime() - r.hours * 3600_000);
    adminApi
      .stats({ bucket: r.bucket, from: from.toISOString(), to: to.toISOString(), policy_version: policyVersion || undefined })
      .then(setStats, (err: unknown) => {
        if (err instanceof AdminApiError && err.status === 401) onUnauthorized();
        notify(err instanceof Error ? err.message : String(err), 'error');
      });
  }, [range, policyVersion, notify, onUnauthorized]);

  const bucket = RANGES[range]!.bucket;
  const volume = useMemo(
    () =>
      (stats?.volume ?? []).map((v) => ({
        t: bucket === 'hour' ? v.t.slice(5, 13).replace('T', ' ') + 'h' : v.t.slice(5, 10),
        ...v.by_kind,
      })),
    [stats, bucket],
  );
  const ratings = useMemo(
    () => (['1', '2', '3', '4', '5'] as const).map((k) => ({ rating: `${k}★`, count: stats?.totals.rating_distribution[k] ?? 0 })),
    [stats],
  );
  const statusPie = useMemo(
    () =>
      stats
        ? (['approved', 'rejected', 'pending'] as const).map((s) => ({ name: s, value: stats.totals.by_status[s] }))
        : [],
    [stats],
  );
  const perPolicy = useMemo(
    () =>
      (stats?.per_policy_version ?? []).map((p) => ({
        policy: p.policy_version,
        feedback: p.feedback,
        approval: p.approval_rate === null ? null : Math.round(p.approval_rate * 1000) / 10,
        mean_rating: p.mean_rating,
        up: p.thumbs_up,
        down: p.thumbs_down,
        ...p.by_status,
      })),
    [stats],
  );

  return (
    <main className="main pad" aria-labelledby="dash-title">
      <div className="row">
        <h1 id="dash-title">Dashboard</h1>
        <span className="spacer" />
        <div className="segmented" role="group" aria-label="Time range">
          {RANGES.map((r, i) => (
            <button key={r.label} type="button" aria-pressed={range === i} className={range === i ? 'on' : ''} onClick={() => setRange(i)}>
              {r.label}
            </button>
          ))}
        </div>
        <label>
          Policy{' '}
          <select value={policyVersion} onChange={(e) => setPolicyVersion(e.target.value)}>
            <option value="">all</option>
            {versions.map((v) => (
              <option key={v}>{v}</option>
            ))}
          </select>
        </label>
      </div>

      <section className="kpis" aria-label="Totals">
        <Kpi label="Feedback" value={stats ? String(stats.totals.feedback) : '–'} />
        <Kpi label="Approval rate" value={stats ? percent(stats.totals.approval_rate) : '–'} />
        <Kpi label="Pending" value={stats ? String(stats.totals.by_status.pending) : '–'} />
        <Kpi label="Approved" value={stats ? String(stats.totals.by_status.approved) : '–'} />
        <Kpi label="Rejected" value={stats ? String(stats.totals.by_status.rejected) : '–'} />
      </section>

      <section className="kpis" aria-label="Agreement">
        <Kpi
          label={`Reviewer agreement α (approve / reject), ${stats ? agreementDetail(stats.agreement.decisions, 'item', 'decisions') : '–'}`}
          value={stats ? alphaText(stats.agreement.decisions) : '–'}
        />
        <Kpi
          label={`Rating agreement α (interval), ${stats ? agreementDetail(stats.agreement.ratings, 'choice', 'ratings') : '–'}`}
          value={stats ? alphaText(stats.agreement.ratings) : '–'}
        />
        <Kpi label="Reviewers per item (majority decides)" value={stats ? String(stats.agreement.review_overlap) : '–'} />
      </section>

      <div className="charts">
        <figure className="panel chart wide" aria-labelledby="vol-title">
          <figcaption id="vol-title">Feedback volume per {bucket}, by kind</figcaption>
          <ResponsiveContainer width="100%" height={240}>
            <BarChart data={volume} margin={{ top: 8, right: 8, bottom: 0, left: -16 }}>
              <CartesianGrid strokeDasharray="3 3" vertical={false} />
              <XAxis dataKey="t" tick={{ fontSize: 11 }} minTickGap={16} />
              <YAxis allowDecimals={false} tick={{ fontSize: 11 }} />
              <Tooltip />
              <Legend wrapperStyle={{ fontSize: 12 }} />
              {FEEDBACK_KINDS.map((k) => (
                <Bar key={k} dataKey={k} stackId="kind" fill={KIND_COLOURS[k]} isAnimationActive={false} />
              ))}
            </BarChart>
          </ResponsiveContainer>
        </figure>

        <figure className="panel chart" aria-labelledby="status-title">
          <figcaption id="status-title">Review status · approval {stats ? percent(stats.totals.approval_rate) : '–'}</figcaption>
          <ResponsiveContainer width="100%" height={220}>
            <PieChart>
              <Pie data={statusPie} dataKey="value" nameKey="name" innerRadius={50} outerRadius={80} isAnimationActive={false} label>
                {statusPie.map((s) => (
                  <Cell key={s.name} fill={STATUS_COLOURS[s.name]} />
                ))}
              </Pie>
              <Tooltip />
              <Legend wrapperStyle={{ fontSize: 12 }} />
            </PieChart>
          </ResponsiveContainer>
        </figure>

        <figure className="panel chart" aria-labelledby="rating-title">
          <figcaption id="rating-title">Rating distribution</figcaption>
          <ResponsiveContainer width="100%" height={220}>
            <BarChart data={ratings} margin={{ top: 8, right: 8, bottom: 0, left: -16 }}>
              <CartesianGrid strokeDasharray="3 3" vertical={false} />
              <XAxis dataKey="rating" tick={{ fontSize: 11 }} />
              <YAxis allowDecimals={false} tick={{ fontSize: 11 }} />
              <Tooltip />
              <Bar dataKey="count" fill={KIND_COLOURS.rating} isAnimationActive={false} />
            </BarChart>
          </ResponsiveContainer>
        </figure>

        <figure className="panel chart" aria-labelledby="policy-title">
          <figcaption id="policy-title">Per policy version: review status</figcaption>
          <ResponsiveContainer width="100%" height={220}>
            <BarChart data={perPolicy} margin={{ top: 8, right: 8, bottom: 0, left: -16 }}>
              <CartesianGrid strokeDasharray="3 3" vertical={false} />
              <XAxis dataKey="policy" tick={{ fontSize: 11 }} />
              <YAxis allowDecimals={false} tick={{ fontSize: 11 }} />
              <Tooltip />
              <Legend wrapperStyle={{ fontSize: 12 }} />
              {(['approved', 'rejected', 'pending'] as const).map((s) => (
                <Bar key={s} dataKey={s} stackId="s" fill={STATUS_COLOURS[s]} isAnimationActive={false} />
              ))}
            </BarChart>
          </ResponsiveContainer>
        </figure>
      </div>

      <table className="grid" aria-label="Per policy version">
        <thead>
          <tr>
            <th scope="col">Policy version</th>
            <th scope="col" className="num">
              Feedback
            </th>
            <th scope="col" className="num">
              Approval
            </th>
            <th scope="col" className="num">
              Mean rating
            </th>
            <th scope="col" className="num">
              Thumbs up / down
            </th>
          </tr>
        </thead>
        <tbody>
          {perPolicy.map((p) => (
            <tr key={p.policy}>
              <td className="mono">{p.policy}</td>
              <td className="num">{p.feedback}</td>
              <td className="num">{p.approval === null ? '–' : `${p.approval}%`}</td>
              <td className="num">{p.mean_rating === null ? '–' : p.mean_rating.toFixed(2)}</td>
              <td className="num">
                {p.up} / {p.down}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </main>
  );
}

/** α to two decimals; "–" where it is undefined (no item judged twice, or no variation at all). */
function alphaText(a: AdminAgreement): string {
  return a.alpha === null ? '–' : a.alpha.toFixed(2);
}

/** "3 items judged by several, 7 decisions". */
function agreementDetail(a: AdminAgreement, unit: string, values: string): string {
  return `${a.units} ${unit}${a.units === 1 ? '' : 's'} judged by several, ${a.values} ${values}`;
}

function Kpi({ label, value }: { label: string; value: string }) {
  return (
    <div className="kpi">
      <div className="kpi-value">{value}</div>
      <div className="kpi-label">{label}</div>
    </div>
  );
}
