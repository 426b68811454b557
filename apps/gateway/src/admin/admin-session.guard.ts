/**
 * Guards every admin API route but the login: a live session cookie (401 without one; a bearer user key
 * instead gets 403), and on POST/PUT/PATCH/DELETE the session's CSRF token in `x-csrf-token` (403
 * csrf_failed). The session is then readable by the handler through adminSessionOf(request).
 */
import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import { ADMIN_CSRF_HEADER, ADMIN_SESSION_COOKIE } from '@flywheel/contracts';
import { ApiKeyStore } from '../auth/api-keys';
import { OpenAiError } from '../http/openai-error';
import { requestContextOf } from '../http/request-context';
import { readCookie } from './admin-cookies';
import { AdminSessions, csrfMatches, type AdminSession } from './admin-sessions';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const sessionsOfRequests = new WeakMap<IncomingMessage, AdminSession>();

/** The session the guard admitted this request with. */
export function adminSessionOf(raw: IncomingMessage): AdminSession {
  const session = sessionsOfRequests.get(raw);
  if (!session) throw new OpenAiError(401, 'authentication_error', 'Not logged in to the admin API.', null, 'no_session');
  return session;
}

export const notLoggedIn = () =>
  new OpenAiError(401, 'authentication_error', 'Not logged in to the admin API: POST /admin/api/session with an admin key first.', null, 'no_session');

/**
 * Without a session: a user key in Authorization is refused as such (403), anything else is 401.
 * An admin bearer key is not a session either: the admin API takes cookies only, so CSRF always applies.
 */
export function admitAdminRequest(sessions: AdminSessions, keys: ApiKeyStore, raw: IncomingMessage): AdminSession {
  const session = sessions.get(readCookie(raw.headers.cookie, ADMIN_SESSION_COOKIE));
  if (!session) {
    const bearer = keys.authenticate(raw.headers.authorization);
    if (bearer.ok && bearer.key.scope !== 'admin') {
      throw new OpenAiError(403, 'permission_error', 'The admin API needs an admin key; user keys cannot reach it.', null, 'wrong_key_scope');
    }
    throw notLoggedIn();
  }
  if (!SAFE_METHODS.has(raw.method ?? 'GET')) {
    const presented = raw.headers[ADMIN_CSRF_HEADER];
    if (!csrfMatches(session, typeof presented === 'string' ? presented : undefined)) {
      throw new OpenAiError(403, 'permission_error', `Missing or wrong ${ADMIN_CSRF_HEADER} header: send the csrf_token of your session.`, null, 'csrf_failed');
    }
  }
  return session;
}

@Injectable()
export class AdminSessionGuard implements CanActivate {
  constructor(
    private readonly sessions: AdminSessions,
    private readonly keys: ApiKeyStore,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    const raw = context.switchToHttp().getRequest<{ raw: IncomingMessage }>().raw;
    const session = admitAdminRequest(this.sessions, this.keys, raw);
    sessionsOfRequests.set(raw, session);
    requestContextOf(raw).log.key_id = session.keyId;
    return true;
  }
}
