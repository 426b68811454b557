/**
 * Pure text for the Runs pages: a run's duration, a metric value, and which few summary metrics a row
 * shows. No DOM and no React, like format.ts.
 */
import type { TrainingRun } from '../../../libs/contracts/src/training-runs.schemas';

/** "42 s", "3 min 05 s", "2 h 07 min"; a running run counts up to `now`; "–" before it starts. */
export function runDuration(run: Pick<TrainingRun, 'startedAt' | 'finishedAt'>, now: number = Date.now()): string {
  if (!run.startedAt) return '–';
  const end = run.finishedAt ? Date.parse(run.finishedAt) : now;
  const s = Math.max(0, Math.round((end - Date.parse(run.startedAt)) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

/** Four significant digits, exponent form for very small or large magnitudes; "–" for null. */
export function metricText(v: unknown): string {
  if (typeof v !== 'number') return v === null || v === undefined ? '–' : String(v);
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e6) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}

/** What a reader looks for first in each kind's summary; other numeric metrics follow. */
const PREFERRED = [
  'reward_mean',
  'reward_mean_last',
  'kl',
  'heldout_accuracy',
  'accuracy',
  'heldout_loss_after',
  'train_loss_last',
  'loss_last',
  'loss',
  'win_rate',
];

/** Up to `n` numeric summary metrics, preferred names first. */
export function keyMetrics(metrics: Record<string, unknown>, n = 3): [string, number][] {
  const numeric = Object.entries(metrics).filter((e): e is [string, number] => typeof e[1] === 'number');
  const rank = (name: string) => {
    const i = PREFERRED.indexOf(name);
    return i === -1 ? PREFERRED.length : i;
  };
  return numeric.sort((a, b) => rank(a[0]) - rank(b[0]) || a[0].localeCompare(b[0])).slice(0, n);
}

export const isActive = (status: TrainingRun['status']) => status === 'queued' || status === 'running';
