/**
 * Merging a policy frame's token deltas before they reach the output gates: consecutive deltas of one choice
 * (several steps' tokens when the policy's sender fell behind) become one, so the gate checks and the SSE chunk
 * are paid once per choice per frame rather than once per token. Order within a choice is kept, and a delta
 * that ends its choice is never merged with one after it. Pure; no I/O.
 */
import type { TokenDelta } from '@flywheel/contracts';

export function mergeDeltas(deltas: readonly TokenDelta[]): TokenDelta[] {
  const merged: TokenDelta[] = [];
  const open = new Map<number, TokenDelta>();
  for (const d of deltas) {
    const last = open.get(d.choice);
    if (last && last.finishReason === undefined && (last.logprobs === undefined) === (d.logprobs === undefined)) {
      // `last` is our own copy (below), so it grows in place.
      last.text += d.text;
      last.tokenIds.push(...d.tokenIds);
      if (last.logprobs && d.logprobs) last.logprobs.push(...d.logprobs);
      if (d.finishReason !== undefined) last.finishReason = d.finishReason;
      continue;
    }
    const copy: TokenDelta = { ...d, tokenIds: [...d.tokenIds], ...(d.logprobs ? { logprobs: [...d.logprobs] } : {}) };
    merged.push(copy);
    open.set(d.choice, copy);
  }
  return merged;
}
