/**
 * The admin session cookie: reading one cookie out of a Cookie header, and the Set-Cookie values that
 * set and clear it (httpOnly, SameSite=Strict, Path=/admin; Secure behind https). No cookie library.
 */
import { ADMIN_SESSION_COOKIE } from '@flywheel/contracts';

/** The value of cookie `name` in a Cookie header, or undefined. Values are not URL-decoded (ours are base64url). */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
  }
  return undefined;
}

export function sessionCookie(sessionId: string, maxAgeS: number, secure: boolean): string {
  return `${ADMIN_SESSION_COOKIE}=${sessionId}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=${Math.max(0, Math.floor(maxAgeS))}${secure ? '; Secure' : ''}`;
}

export function clearedSessionCookie(secure: boolean): string {
  return sessionCookie('', 0, secure);
}
