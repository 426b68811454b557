/**
 * Pure text formatting for the admin UI: feedback values, times, ids and rates as a reviewer reads
 * them. No DOM and no React, so it type-checks anywhere.
 */
import type { FeedbackKind } from '../../../libs/contracts/src/feedback.schemas';

/** "▲ up", "★★★★☆ 4", "#0 over #1", the correction's first line, the flag's category, "#2 > #0 > #1". */
export function feedbackValueText(kind: FeedbackKind, value: unknown): string {
  switch (kind) {
    case 'thumbs':
      // Geometric shapes, not emoji: every system font has them, so no tofu boxes on a bare Linux.
      return value === 'up' ? '▲ up' : value === 'down' ? '▼ down' : String(value);
    case 'rating': {
      const n = typeof value === 'number' ? Math.max(0, Math.min(5, Math.round(value))) : 0;
      return `${'★'.repeat(n)}${'☆'.repeat(5 - n)} ${String(value)}`;
    }
    case 'preference': {
      if (typeof value === 'object' && value !== null && 'chosen' in value && 'rejected' in value) {
        return `#${String(value.chosen)} over #${String(value.rejected)}`;
      }
      return JSON.stringify(value);
    }
    case 'correction':
      return typeof value === 'string' ? value : JSON.stringify(value);
    case 'flag':
      return `⚑ ${String(value)}`;
    case 'ranking':
      return Array.isArray(value) ? value.map((i) => `#${String(i)}`).join(' > ') : JSON.stringify(value);
  }
}

/** "2026-11-28 22:40" in the browser's zone; the full ISO time goes in a title attribute. */
export function shortTime(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** "chatcmpl-0194…a3f2": enough of an id to tell rows apart; the whole id goes in a title. */
export function shortId(id: string): string {
  return id.length <= 18 ? id : `${id.slice(0, 13)}…${id.slice(-4)}`;
}

export function percent(rate: number | null): string {
  return rate === null ? '–' : `${(rate * 100).toFixed(1)}%`;
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** A date input's "YYYY-MM-DD" as the start of that day in UTC, or undefined when empty. */
export function dayStartIso(day: string): string | undefined {
  return /^\d{4}-\d{2}-\d{2}$/.test(day) ? `${day}T00:00:00.000Z` : undefined;
}

/** The day after a date input's day (the API's `to` is exclusive, the input means "through this day"). */
export function dayEndIso(day: string): string | undefined {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) return undefined;
  const d = new Date(`${day}T00:00:00.000Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString();
}
