/**
 * Login with an admin key: POST /admin/api/session sets the httpOnly session cookie. The key is sent
 * once and never stored by the page.
 */
import { useState } from 'react';
import type { AdminSession } from '../../../libs/contracts/src/admin.schemas';
import { AdminApiError, adminApi } from './admin-api.client';

export function LoginPage({ onLoggedIn }: { onLoggedIn(s: AdminSession): void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <main className="login">
      <form
        className="card stack"
        aria-labelledby="login-title"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            onLoggedIn(await adminApi.login(key.trim()));
          } catch (err) {
            setError(
              err instanceof AdminApiError && err.status === 403
                ? 'That key is not an admin key.'
                : err instanceof AdminApiError && err.status === 401
                  ? 'Unknown key.'
                  : err instanceof Error
                    ? err.message
                    : String(err),
            );
          } finally {
            setBusy(false);
          }
        }}
      >
        <h1 id="login-title">Flywheel review</h1>
        <label>
          Admin key
          <input
            name="key"
            type="password"
            autoComplete="off"
            autoFocus
            required
            value={key}
            onChange={(e) => setKey(e.target.value)}
            aria-describedby={error ? 'login-error' : undefined}
          />
        </label>
        {error ? (
          <p id="login-error" role="alert" className="error-text">
            {error}
          </p>
        ) : null}
        <button type="submit" className="primary" disabled={busy || !key.trim()}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
