import { RateLimiter } from './rate-limiter';

describe('RateLimiter', () => {
  let now = 0;
  const limiter = () => new RateLimiter(() => now);
  beforeEach(() => (now = 0));

  it('admits up to the per-minute request limit, then answers with a Retry-After', () => {
    const l = limiter();
    const limits = { requestsPerMinute: 2, tokensPerMinute: 0 };
    expect(l.admit('k', limits).ok).toBe(true);
    expect(l.admit('k', limits)).toMatchObject({ ok: true, headers: { 'x-ratelimit-remaining-requests': '0' } });
    const refused = l.admit('k', limits);
    expect(refused).toMatchObject({ ok: false, kind: 'requests', retryAfterS: 30 });
    now = 30_000;
    expect(l.admit('k', limits).ok).toBe(true);
    expect(l.admit('other', limits).ok).toBe(true);
  });

  it('charges tokens after the fact and refuses while the bucket is empty', () => {
    const l = limiter();
    const limits = { requestsPerMinute: 0, tokensPerMinute: 600 };
    expect(l.admit('k', limits).ok).toBe(true);
    l.charge('k', limits, 700);
    const refused = l.admit('k', limits);
    expect(refused).toMatchObject({ ok: false, kind: 'tokens' });
    if (!refused.ok) expect(refused.retryAfterS).toBe(11);
    now = 11_000;
    expect(l.admit('k', limits).ok).toBe(true);
  });

  it('treats 0 as unlimited', () => {
    const l = limiter();
    for (let i = 0; i < 1000; i++) expect(l.admit('k', { requestsPerMinute: 0, tokensPerMinute: 0 }).ok).toBe(true);
  });
});
