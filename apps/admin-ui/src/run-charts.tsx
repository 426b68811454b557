/**
 * A run's per-step curves, drawn with Recharts: metrics grouped into families (reward with its ±std band,
 * KL terms, clip fraction, entropy, losses, response length, stacked step timings) and one small chart for
 * every other metric. Metric names are open-ended, so values are read through functions, never as dotted
 * dataKey paths. Loaded with the run page only (Recharts is most of that chunk).
 */
import { Area, CartesianGrid, ComposedChart, Legend, Line, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import type { TrainingMetricPoint } from '../../../libs/contracts/src/training-runs.schemas';
import { metricText } from './runs.format';

export interface ChartSpec {
  id: string;
  title: string;
  /** Metrics drawn as lines (or stacked areas). */
  lines: string[];
  /** A shaded mean ± std band behind the mean's line. */
  band?: { mean: string; std: string };
  stacked?: boolean;
}

const FAMILIES: { id: string; title: string; names: string[] }[] = [
  { id: 'reward', title: 'Reward', names: ['reward_mean'] },
  { id: 'kl', title: 'KL', names: ['kl', 'approx_kl', 'kl_coef'] },
  { id: 'clip', title: 'Clip fraction', names: ['clip_fraction'] },
  { id: 'entropy', title: 'Entropy', names: ['entropy'] },
  { id: 'loss', title: 'Loss', names: ['policy_loss', 'value_loss', 'loss'] },
  { id: 'length', title: 'Response length', names: ['response_length'] },
];
const isTiming = (name: string) => /^time_/.test(name);

/** The charts for a series whose points carry `names`, in a fixed reading order. */
export function chartsOf(names: Iterable<string>): ChartSpec[] {
  const left = new Set(names);
  const specs: ChartSpec[] = [];
  for (const f of FAMILIES) {
    const lines = f.names.filter((n) => left.has(n));
    if (lines.length === 0) continue;
    lines.forEach((n) => left.delete(n));
    const spec: ChartSpec = { id: f.id, title: f.title, lines };
    if (f.id === 'reward' && left.has('reward_std')) {
      spec.band = { mean: 'reward_mean', std: 'reward_std' };
      spec.title = 'Reward (mean ± std)';
      left.delete('reward_std');
    }
    specs.push(spec);
  }
  const timings = [...left].filter(isTiming).sort();
  if (timings.length > 0) {
    timings.forEach((n) => left.delete(n));
    specs.push({ id: 'timings', title: 'Time per step (s)', lines: timings, stacked: true });
  }
  for (const name of [...left].sort()) specs.push({ id: `m-${name}`, title: name, lines: [name] });
  return specs;
}

export function metricNamesOf(series: TrainingMetricPoint[]): Set<string> {
  const names = new Set<string>();
  for (const p of series) for (const n of Object.keys(p.metrics)) names.add(n);
  return names;
}

/** Distinct under common colour blindness (Tableau 10). */
const COLOURS = ['#4c78a8', '#f58518', '#54a24b', '#e45756', '#72b7b2', '#b279a2', '#eeca3b', '#ff9da6', '#9d755d', '#bab0ac'];

type Row = { step: number; m: Record<string, number | null> };
const valueOf = (name: string) => (r: Row) => r.m[name] ?? null;
const bandOf = (mean: string, std: string) => (r: Row) => {
  const m = r.m[mean];
  const s = r.m[std];
  return typeof m === 'number' && typeof s === 'number' ? [m - s, m + s] : null;
};

export function RunCharts({ series, label }: { series: TrainingMetricPoint[]; label: string }) {
  const specs = chartsOf(metricNamesOf(series));
  const rows: Row[] = series.map((p) => ({ step: p.step, m: p.metrics }));
  if (specs.length === 0) return <p className="muted">No per-step metrics logged yet.</p>;
  return (
    <section className="charts run-charts" aria-label={label}>
      {specs.map((spec) => (
        <MetricChart key={spec.id} spec={spec} rows={rows} />
      ))}
    </section>
  );
}

function MetricChart({ spec, rows }: { spec: ChartSpec; rows: Row[] }) {
  const small = spec.lines.length === 1 && !spec.band;
  return (
    <figure className="panel chart" aria-label={spec.title} data-chart={spec.id}>
      <figcaption>{spec.title}</figcaption>
      <ResponsiveContainer width="100%" height={small ? 150 : 190}>
        <ComposedChart data={rows} margin={{ top: 6, right: 10, bottom: 0, left: 0 }}>
          <CartesianGrid strokeDasharray="3 3" vertical={false} />
          <XAxis dataKey="step" type="number" domain={['dataMin', 'dataMax']} allowDecimals={false} tick={{ fontSize: 11 }} />
          <YAxis width={52} tick={{ fontSize: 11 }} tickFormatter={(v: number) => metricText(v)} domain={['auto', 'auto']} />
          <Tooltip formatter={(v) => (Array.isArray(v) ? v.map(metricText).join(' – ') : metricText(v))} labelFormatter={(s) => `step ${String(s)}`} />
          {spec.lines.length > 1 || spec.band ? <Legend wrapperStyle={{ fontSize: 11 }} /> : null}
          {spec.band ? (
            <Area
              name={`${spec.band.mean} ± ${spec.band.std}`}
              dataKey={bandOf(spec.band.mean, spec.band.std)}
              stroke="none"
              fill={COLOURS[0]}
              fillOpacity={0.18}
              isAnimationActive={false}
              connectNulls
            />
          ) : null}
          {spec.lines.map((name, i) =>
            spec.stacked ? (
              <Area
                key={name}
                name={name}
                dataKey={valueOf(name)}
                stackId="t"
                stroke={COLOURS[i % COLOURS.length]}
                fill={COLOURS[i % COLOURS.length]}
                fillOpacity={0.5}
                isAnimationActive={false}
              />
            ) : (
              <Line
                key={name}
                name={name}
                dataKey={valueOf(name)}
                stroke={COLOURS[i % COLOURS.length]}
                strokeWidth={1.5}
                dot={rows.length <= 1}
                isAnimationActive={false}
                connectNulls
              />
            ),
          )}
        </ComposedChart>
      </ResponsiveContainer>
    </figure>
  );
}
