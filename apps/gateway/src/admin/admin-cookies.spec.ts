/** The session cookie's attributes, and reading it back out of a Cookie header. */
import { clearedSessionCookie, readCookie, sessionCookie } from './admin-cookies';

describe('admin session cookie', () => {
  it('reads one cookie out of a Cookie header', () => {
    expect(readCookie('a=1; flywheel_admin_session=abc-DEF_9; b=2', 'flywheel_admin_session')).toBe('abc-DEF_9');
    expect(readCookie('flywheel_admin_session="quoted"', 'flywheel_admin_session')).toBe('quoted');
    expect(readCookie('xflywheel_admin_session=1; other', 'flywheel_admin_session')).toBeUndefined();
    expect(readCookie(undefined, 'flywheel_admin_session')).toBeUndefined();
  });

  it('is httpOnly, SameSite=Strict, scoped to /admin, and Secure behind https', () => {
    expect(sessionCookie('abc', 3600.4, false)).toBe('flywheel_admin_session=abc; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=3600');
    expect(sessionCookie('abc', 60, true)).toBe('flywheel_admin_session=abc; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=60; Secure');
    expect(clearedSessionCookie(false)).toBe('flywheel_admin_session=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0');
  });
});
