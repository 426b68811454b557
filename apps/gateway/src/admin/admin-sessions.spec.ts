/** Admin sessions in memory: random ids and tokens, expiry, the oldest evicted at the cap, exact CSRF match. */
import { AdminSessions, csrfMatches } from './admin-sessions';

describe('AdminSessions', () => {
  it('hands out random 32-byte ids and CSRF tokens, and forgets a session when it expires', () => {
    let now = 1_000;
    const sessions = new AdminSessions(60_000, 10, () => now);
    const a = sessions.create('key_aaaaaaaaaaaa');
    const b = sessions.create('key_aaaaaaaaaaaa');
    expect(a.id).toMatch(/^[\w-]{43}$/);
    expect(a.csrfToken).toMatch(/^[\w-]{43}$/);
    expect(new Set([a.id, b.id, a.csrfToken, b.csrfToken]).size).toBe(4);
    expect(sessions.get(a.id)).toEqual({ id: a.id, keyId: 'key_aaaaaaaaaaaa', csrfToken: a.csrfToken, expiresAt: 61_000 });
    now = 60_999;
    expect(sessions.get(a.id)).not.toBeNull();
    now = 61_000;
    expect(sessions.get(a.id)).toBeNull();
    expect(sessions.get(undefined)).toBeNull();
    expect(sessions.get('unknown')).toBeNull();
  });

  it('ends the oldest session when a login would exceed the maximum, and on logout', () => {
    const sessions = new AdminSessions(60_000, 2);
    const first = sessions.create('key_1');
    const second = sessions.create('key_2');
    const third = sessions.create('key_3');
    expect(sessions.get(first.id)).toBeNull();
    expect(sessions.get(second.id)).not.toBeNull();
    sessions.delete(third.id);
    expect(sessions.get(third.id)).toBeNull();
    expect(sessions.size).toBe(1);
  });

  it('matches a CSRF token exactly', () => {
    const session = new AdminSessions(60_000, 2).create('key_1');
    expect(csrfMatches(session, session.csrfToken)).toBe(true);
    expect(csrfMatches(session, undefined)).toBe(false);
    expect(csrfMatches(session, '')).toBe(false);
    expect(csrfMatches(session, `${session.csrfToken}x`)).toBe(false);
    expect(csrfMatches(session, session.csrfToken.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')))).toBe(false);
  });
});
