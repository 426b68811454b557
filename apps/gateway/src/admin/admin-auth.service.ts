/**
 * Logging in and out of the admin API: an admin key (checked by the gateway's authorize: a user key is
 * 403, an unknown one 401) opens a server-side session; the answer carries its CSRF token and the cookie
 * to set. Logging out drops the session.
 */
import { adminLoginBodySchema, type AdminSession as AdminSessionBody } from '@flywheel/contracts';
import type { ApiKeyStore } from '../auth/api-keys';
import { authorize } from '../auth/api-key.guard';
import { fromZodError } from '../http/openai-error';
import { clearedSessionCookie, sessionCookie } from './admin-cookies';
import type { AdminSession, AdminSessions } from './admin-sessions';

export const sessionBodyOf = (s: AdminSession): AdminSessionBody => ({
  csrf_token: s.csrfToken,
  key_id: s.keyId,
  expires_at: new Date(s.expiresAt).toISOString(),
});

export class AdminAuthService {
  constructor(
    private readonly sessions: AdminSessions,
    private readonly keys: ApiKeyStore,
    private readonly now: () => number = Date.now,
  ) {}

  login(body: unknown, secure: boolean): { session: AdminSessionBody; cookie: string } {
    const parsed = adminLoginBodySchema.safeParse(body);
    if (!parsed.success) throw fromZodError(parsed.error, body);
    const key = authorize(this.keys, `Bearer ${parsed.data.key}`, 'admin');
    const session = this.sessions.create(key.id);
    return { session: sessionBodyOf(session), cookie: sessionCookie(session.id, Math.round((session.expiresAt - this.now()) / 1000), secure) };
  }

  logout(session: AdminSession, secure: boolean): string {
    this.sessions.delete(session.id);
    return clearedSessionCookie(secure);
  }
}
