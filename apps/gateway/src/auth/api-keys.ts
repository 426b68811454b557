/**
 * The gateway's API keys: loaded once at boot from FLYWHEEL_API_KEYS, the keys file and
 * FLYWHEEL_ADMIN_KEYS (or a dev key created in the state folder when none is configured), kept only
 * as sha256 digests, and matched in constant time. A key's id (a digest prefix) is what logs, metrics
 * and completion records carry; the key itself is never logged.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { GatewayApiConfig } from '@flywheel/config';

export type KeyScope = 'api' | 'admin';

export interface RateLimits {
  /** 0 = unlimited. */
  requestsPerMinute: number;
  tokensPerMinute: number;
}

export interface ApiKey {
  /** `key_<12 hex>`: stable, not reversible, safe to log. */
  id: string;
  name: string;
  scope: KeyScope;
  limits: RateLimits;
}

interface StoredKey extends ApiKey {
  digest: Buffer;
}

const digestOf = (secret: string): Buffer => createHash('sha256').update(secret, 'utf8').digest();
export const keyIdOf = (secret: string): string => `key_${digestOf(secret).subarray(0, 6).toString('hex')}`;

export interface KeySpec {
  secret: string;
  scope: KeyScope;
  name?: string;
  limits: RateLimits;
}

export type AuthResult = { ok: true; key: ApiKey } | { ok: false; reason: 'missing' | 'malformed' | 'invalid' };

export class ApiKeyStore {
  private readonly keys: StoredKey[];

  constructor(specs: readonly KeySpec[]) {
    const seen = new Set<string>();
    this.keys = [];
    for (const spec of specs) {
      const id = keyIdOf(spec.secret);
      if (seen.has(id)) continue;
      seen.add(id);
      this.keys.push({ id, name: spec.name ?? id, scope: spec.scope, limits: spec.limits, digest: digestOf(spec.secret) });
    }
  }

  get size(): number {
    return this.keys.length;
  }

  /**
   * Matches an Authorization header value. Every stored digest is compared (no early exit), and
   * digests have one length, so the time taken says nothing about which key, or how much of it, matched.
   */
  authenticate(authorization: string | undefined): AuthResult {
    if (authorization === undefined || authorization.trim() === '') return { ok: false, reason: 'missing' };
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!m || !m[1]) return { ok: false, reason: 'malformed' };
    const candidate = digestOf(m[1]);
    let found: StoredKey | null = null;
    for (const key of this.keys) {
      if (timingSafeEqual(candidate, key.digest) && found === null) found = key;
    }
    if (!found) return { ok: false, reason: 'invalid' };
    const { digest: _digest, ...key } = found;
    return { ok: true, key };
  }
}

/**
 * One key per line: `<key> [name=<id>] [rpm=<n>] [tpm=<n>]`; blank lines and `#` comments skipped.
 * Errors name the line, never its key.
 */
export function parseKeysFile(text: string, defaults: RateLimits, source: string): KeySpec[] {
  const specs: KeySpec[] = [];
  text.split(/\r?\n/).forEach((rawLine, i) => {
    const line = rawLine.replace(/#.*$/, '').trim();
    if (line === '') return;
    const [secret, ...options] = line.split(/\s+/);
    if (!secret || secret.length < 8) throw new Error(`${source}:${i + 1}: a key must be at least 8 characters`);
    const spec: KeySpec = { secret, scope: 'api', limits: { ...defaults } };
    for (const option of options) {
      const [name, value] = option.split('=', 2);
      if (name === 'name' && value) spec.name = value;
      else if ((name === 'rpm' || name === 'tpm') && value !== undefined && /^\d+$/.test(value)) {
        spec.limits[name === 'rpm' ? 'requestsPerMinute' : 'tokensPerMinute'] = Number(value);
      } else throw new Error(`${source}:${i + 1}: unknown option "${name}" (expected name=, rpm=, tpm=)`);
    }
    specs.push(spec);
  });
  return specs;
}

export interface LoadedKeys {
  store: ApiKeyStore;
  /** Set when no key was configured and the gateway uses (and maybe just created) a dev key. */
  devKey: { secret: string; file: string; created: boolean } | null;
}

/** Filesystem access, injectable so key loading is testable without touching disk. */
export interface KeyFiles {
  exists(file: string): boolean;
  read(file: string): string;
  /** Creates parent folders; the file is readable by its owner only. */
  writeSecret(file: string, text: string): void;
}

export const nodeKeyFiles: KeyFiles = {
  exists: (file) => existsSync(file),
  read: (file) => readFileSync(file, 'utf8'),
  writeSecret: (file, text) => {
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, text, { mode: 0o600 });
  },
};

export function loadApiKeys(api: GatewayApiConfig, stateDir: string, files: KeyFiles = nodeKeyFiles): LoadedKeys {
  const defaults = api.rateLimit;
  const specs: KeySpec[] = api.apiKeys.map((secret) => ({ secret, scope: 'api', limits: { ...defaults } }));
  if (api.apiKeysFile) {
    let text: string;
    try {
      text = files.read(api.apiKeysFile);
    } catch (err) {
      throw new Error(`FLYWHEEL_API_KEYS_FILE ${api.apiKeysFile} cannot be read: ${(err as Error).message}`);
    }
    specs.push(...parseKeysFile(text, defaults, api.apiKeysFile));
  }
  let devKey: LoadedKeys['devKey'] = null;
  if (specs.length === 0) {
    const file = path.join(stateDir, 'dev-api-key');
    const existing = files.exists(file) ? files.read(file).trim() : '';
    const created = existing.length < 8;
    const secret = created ? `fw-dev-${randomBytes(24).toString('base64url')}` : existing;
    if (created) files.writeSecret(file, `${secret}\n`);
    devKey = { secret, file, created };
    specs.push({ secret, scope: 'api', name: 'dev', limits: { ...defaults } });
  }
  // Admin keys have no rate limit of their own: the admin API is for a handful of reviewers.
  for (const secret of api.adminKeys) specs.push({ secret, scope: 'admin', limits: { requestsPerMinute: 0, tokensPerMinute: 0 } });
  return { store: new ApiKeyStore(specs), devKey };
}
