/**
 * Admin sessions held in this gateway's memory: a random 32-byte session id (the cookie) maps to the
 * admin key id, a CSRF token and an expiry. Not shared between replicas and lost on restart (the
 * reviewer logs in again). The clock is injectable so expiry is testable.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';

export interface AdminSession {
  id: string;
  keyId: string;
  csrfToken: string;
  /** Unix ms. */
  expiresAt: number;
}

const token = (): string => randomBytes(32).toString('base64url');

export class AdminSessions {
  /** Insertion order = login order, so the first entry is the oldest. */
  private readonly sessions = new Map<string, AdminSession>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxSessions: number,
    private readonly now: () => number = Date.now,
  ) {}

  create(keyId: string): AdminSession {
    this.sweep();
    while (this.sessions.size >= this.maxSessions) {
      const oldest = this.sessions.keys().next();
      if (oldest.done) break;
      this.sessions.delete(oldest.value);
    }
    const session: AdminSession = { id: token(), keyId, csrfToken: token(), expiresAt: this.now() + this.ttlMs };
    this.sessions.set(session.id, session);
    return session;
  }

  /** The live session with this id, or null (unknown or expired; an expired one is dropped). */
  get(id: string | undefined): AdminSession | null {
    if (!id) return null;
    const session = this.sessions.get(id);
    if (!session) return null;
    if (session.expiresAt <= this.now()) {
      this.sessions.delete(id);
      return null;
    }
    return session;
  }

  delete(id: string): void {
    this.sessions.delete(id);
  }

  get size(): number {
    return this.sessions.size;
  }

  private sweep(): void {
    const now = this.now();
    for (const [id, session] of this.sessions) if (session.expiresAt <= now) this.sessions.delete(id);
  }
}

/** Constant-time comparison of a presented CSRF token with the session's. */
export function csrfMatches(session: AdminSession, presented: string | undefined): boolean {
  if (typeof presented !== 'string') return false;
  const a = Buffer.from(presented, 'utf8');
  const b = Buffer.from(session.csrfToken, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}
