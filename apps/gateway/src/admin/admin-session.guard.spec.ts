/** Who reaches the admin API: a session (plus its CSRF token on writes); a user key 403, anyone else 401. */
import type { IncomingMessage } from 'node:http';
import { ApiKeyStore } from '../auth/api-keys';
import { OpenAiError } from '../http/openai-error';
import { admitAdminRequest } from './admin-session.guard';
import { AdminSessions } from './admin-sessions';

const limits = { requestsPerMinute: 0, tokensPerMinute: 0 };
const keys = new ApiKeyStore([
  { secret: 'user-key-0001', scope: 'api', limits },
  { secret: 'admin-key-0001', scope: 'admin', limits },
]);

function request(method: string, headers: Record<string, string>): IncomingMessage {
  // Only method and headers are read.
  return Object.assign(Object.create(null), { method, headers });
}

function refusal(fn: () => unknown): { status: number; code: string | null } {
  try {
    fn();
  } catch (err) {
    if (err instanceof OpenAiError) return { status: err.status, code: err.code };
    throw err;
  }
  throw new Error('admitted');
}

describe('admitAdminRequest', () => {
  const sessions = new AdminSessions(60_000, 10);
  const session = sessions.create('key_admin');
  const cookie = `flywheel_admin_session=${session.id}`;

  it('admits a GET with the session cookie, and a POST only with its CSRF token', () => {
    expect(admitAdminRequest(sessions, keys, request('GET', { cookie }))).toBe(session);
    expect(admitAdminRequest(sessions, keys, request('POST', { cookie, 'x-csrf-token': session.csrfToken }))).toBe(session);
    expect(refusal(() => admitAdminRequest(sessions, keys, request('POST', { cookie })))).toEqual({ status: 403, code: 'csrf_failed' });
    expect(refusal(() => admitAdminRequest(sessions, keys, request('DELETE', { cookie, 'x-csrf-token': 'nope' })))).toEqual({ status: 403, code: 'csrf_failed' });
  });

  it('refuses a user key with 403 and anything else without a session with 401', () => {
    expect(refusal(() => admitAdminRequest(sessions, keys, request('GET', { authorization: 'Bearer user-key-0001' })))).toEqual({ status: 403, code: 'wrong_key_scope' });
    expect(refusal(() => admitAdminRequest(sessions, keys, request('GET', { authorization: 'Bearer admin-key-0001' })))).toEqual({ status: 401, code: 'no_session' });
    expect(refusal(() => admitAdminRequest(sessions, keys, request('GET', {})))).toEqual({ status: 401, code: 'no_session' });
    expect(refusal(() => admitAdminRequest(sessions, keys, request('GET', { cookie: 'flywheel_admin_session=forged' })))).toEqual({ status: 401, code: 'no_session' });
  });
});
