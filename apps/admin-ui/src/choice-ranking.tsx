/**
 * The conversation view's ranking of a completion's choices: every choice in one list, best first, moved with ↑ / ↓
 * (buttons, so Tab and Enter work too), submitted as one `rank` review action. Always a complete ranking: the list
 * starts in index order and moving only swaps neighbours. Not the pairwise pick (conversation.page.tsx). Keyed by
 * completion id where it is used, so another completion starts over.
 */
import { useState } from 'react';
import type { AdminChoice } from '../../../libs/contracts/src/admin.schemas';

const preview = (text: string) => (text.length > 90 ? `${text.slice(0, 90)}…` : text);

/** `order` with the entries at positions `at` and `at + 1` swapped; unchanged when either is outside it. */
export function swapped(order: readonly number[], at: number): number[] {
  const next = [...order];
  const [a, b] = [next[at], next[at + 1]];
  if (a === undefined || b === undefined) return next;
  next[at] = b;
  next[at + 1] = a;
  return next;
}

export function ChoiceRanking({ choices, onSubmit }: { choices: AdminChoice[]; onSubmit(order: number[]): Promise<boolean> }) {
  const initial = choices.map((c) => c.index);
  const [order, setOrder] = useState<number[]>(initial);
  const [busy, setBusy] = useState(false);

  const byIndex = new Map(choices.map((c) => [c.index, c]));
  const pairs = (order.length * (order.length - 1)) / 2;

  async function submit() {
    setBusy(true);
    try {
      if (await onSubmit(order)) setOrder(initial);
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="panel ranking" aria-labelledby="ranking-title">
      <h2 id="ranking-title">Rank the choices</h2>
      <p className="muted small">Best first. Approved, a ranking of {order.length} exports as its {pairs} (better, worse) pairs.</p>
      <ol aria-label="Ranking, best first">
        {order.map((index, at) => (
          <li key={index} data-choice={index}>
            <span className="rank-pos">{at + 1}.</span>
            <span className="rank-index mono">#{index}</span>
            <span className="rank-text">{preview(byIndex.get(index)?.text ?? '')}</span>
            <button type="button" disabled={at === 0} onClick={() => setOrder((o) => swapped(o, at - 1))} aria-label={`Move #${index} up`}>
              ↑
            </button>
            <button type="button" disabled={at === order.length - 1} onClick={() => setOrder((o) => swapped(o, at))} aria-label={`Move #${index} down`}>
              ↓
            </button>
          </li>
        ))}
      </ol>
      <button type="button" disabled={busy} onClick={() => void submit()}>
        Submit ranking {order.map((i) => `#${i}`).join(' > ')}
      </button>
    </section>
  );
}
