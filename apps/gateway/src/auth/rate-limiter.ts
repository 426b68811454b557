/**
 * Per-key rate limits as two token buckets per key: requests per minute (a request takes one) and
 * tokens per minute (a request is admitted while the bucket is above zero; its prompt + completion
 * tokens are taken when it ends, so one long completion may push the bucket below zero). Buckets
 * refill continuously; 0 means unlimited. In memory, per gateway replica.
 */
import type { RateLimits } from './api-keys';

interface Bucket {
  level: number;
  at: number;
}

export type Admission =
  | { ok: true; headers: Record<string, string> }
  | { ok: false; kind: 'requests' | 'tokens'; retryAfterS: number; headers: Record<string, string> };

const MINUTE_MS = 60_000;

export class RateLimiter {
  private readonly requests = new Map<string, Bucket>();
  private readonly tokens = new Map<string, Bucket>();

  /** Milliseconds, monotonic; injectable for tests. */
  constructor(private readonly clock: () => number = () => performance.now()) {}

  admit(keyId: string, limits: RateLimits): Admission {
    const now = this.clock();
    const headers: Record<string, string> = {};
    const req = limits.requestsPerMinute > 0 ? this.refill(this.requests, keyId, limits.requestsPerMinute, now) : null;
    const tok = limits.tokensPerMinute > 0 ? this.refill(this.tokens, keyId, limits.tokensPerMinute, now) : null;
    if (req) headers['x-ratelimit-limit-requests'] = String(limits.requestsPerMinute);
    if (tok) {
      headers['x-ratelimit-limit-tokens'] = String(limits.tokensPerMinute);
      headers['x-ratelimit-remaining-tokens'] = String(Math.max(0, Math.floor(tok.level)));
    }
    if (req && req.level < 1) {
      headers['x-ratelimit-remaining-requests'] = '0';
      const waitMs = ((1 - req.level) * MINUTE_MS) / limits.requestsPerMinute;
      return { ok: false, kind: 'requests', retryAfterS: Math.max(1, Math.ceil(waitMs / 1000)), headers };
    }
    if (tok && tok.level <= 0) {
      if (req) headers['x-ratelimit-remaining-requests'] = String(Math.floor(req.level));
      const waitMs = ((1 - tok.level) * MINUTE_MS) / limits.tokensPerMinute;
      return { ok: false, kind: 'tokens', retryAfterS: Math.max(1, Math.ceil(waitMs / 1000)), headers };
    }
    if (req) {
      req.level -= 1;
      headers['x-ratelimit-remaining-requests'] = String(Math.floor(req.level));
    }
    return { ok: true, headers };
  }

  /** Charges a finished request's prompt + completion tokens. */
  charge(keyId: string, limits: RateLimits, tokens: number): void {
    if (limits.tokensPerMinute <= 0 || tokens <= 0) return;
    this.refill(this.tokens, keyId, limits.tokensPerMinute, this.clock()).level -= tokens;
  }

  private refill(buckets: Map<string, Bucket>, keyId: string, perMinute: number, now: number): Bucket {
    let b = buckets.get(keyId);
    if (!b) {
      b = { level: perMinute, at: now };
      buckets.set(keyId, b);
      return b;
    }
    b.level = Math.min(perMinute, b.level + ((now - b.at) * perMinute) / MINUTE_MS);
    b.at = now;
    return b;
  }
}
