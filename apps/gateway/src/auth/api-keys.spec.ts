import { ApiKeyStore, keyIdOf, loadApiKeys, parseKeysFile, type KeyFiles } from './api-keys';
import { authorize } from './api-key.guard';
import type { GatewayApiConfig } from '@flywheel/config';

const limits = { requestsPerMinute: 60, tokensPerMinute: 1000 };
const api = (over: Partial<GatewayApiConfig> = {}): GatewayApiConfig => ({
  apiKeys: [],
  apiKeysFile: null,
  adminKeys: [],
  rateLimit: limits,
  generateTimeoutMs: 1000,
  streamMux: true,
  ...over,
});

function memoryFiles(initial: Record<string, string> = {}): KeyFiles & { files: Record<string, string> } {
  const files = { ...initial };
  return { files, exists: (f) => f in files, read: (f) => { if (!(f in files)) throw new Error('ENOENT'); return files[f]!; }, writeSecret: (f, t) => void (files[f] = t) };
}

describe('API keys', () => {
  const store = new ApiKeyStore([
    { secret: 'sk-alpha-123456', scope: 'api', limits },
    { secret: 'sk-admin-123456', scope: 'admin', limits },
  ]);

  it('matches a bearer key and hands back its id, never the secret', () => {
    const r = store.authenticate('Bearer sk-alpha-123456');
    expect(r).toEqual({ ok: true, key: { id: keyIdOf('sk-alpha-123456'), name: keyIdOf('sk-alpha-123456'), scope: 'api', limits } });
    expect(JSON.stringify(r)).not.toContain('sk-alpha');
    expect(keyIdOf('sk-alpha-123456')).toMatch(/^key_[0-9a-f]{12}$/);
  });

  it('tells missing, malformed and wrong keys apart', () => {
    expect(store.authenticate(undefined)).toEqual({ ok: false, reason: 'missing' });
    expect(store.authenticate('Basic abc')).toEqual({ ok: false, reason: 'malformed' });
    expect(store.authenticate('Bearer sk-alpha-12345')).toEqual({ ok: false, reason: 'invalid' });
  });

  it('refuses admin keys on the API and API keys on admin routes', () => {
    expect(() => authorize(store, 'Bearer sk-admin-123456', 'api')).toThrow(expect.objectContaining({ status: 403, type: 'permission_error' }));
    expect(() => authorize(store, 'Bearer sk-alpha-123456', 'admin')).toThrow(expect.objectContaining({ status: 403 }));
    expect(() => authorize(store, 'Bearer nope-nope-nope', 'api')).toThrow(expect.objectContaining({ status: 401, code: 'invalid_api_key' }));
    expect(authorize(store, 'bearer sk-admin-123456', 'admin').scope).toBe('admin');
  });

  it('reads a keys file with per-key names and limits, naming the line of a bad entry', () => {
    const specs = parseKeysFile('# team keys\nsk-one-12345678 name=alice rpm=5\n\nsk-two-12345678 tpm=0  # unlimited tokens\n', limits, 'keys.txt');
    expect(specs).toEqual([
      { secret: 'sk-one-12345678', scope: 'api', name: 'alice', limits: { requestsPerMinute: 5, tokensPerMinute: 1000 } },
      { secret: 'sk-two-12345678', scope: 'api', limits: { requestsPerMinute: 60, tokensPerMinute: 0 } },
    ]);
    expect(() => parseKeysFile('sk-one-12345678 color=red', limits, 'keys.txt')).toThrow('keys.txt:1: unknown option "color"');
    expect(() => parseKeysFile('\nshort', limits, 'k')).toThrow(/^k:2: a key must be/);
  });

  it('creates a dev key in the state folder when none is configured, and reuses it', () => {
    const files = memoryFiles();
    const first = loadApiKeys(api(), '/state', files);
    expect(first.devKey).toMatchObject({ file: '/state/dev-api-key', created: true });
    expect(files.files['/state/dev-api-key']).toBe(`${first.devKey!.secret}\n`);
    expect(first.store.authenticate(`Bearer ${first.devKey!.secret}`).ok).toBe(true);
    const second = loadApiKeys(api(), '/state', files);
    expect(second.devKey).toMatchObject({ secret: first.devKey!.secret, created: false });
  });

  it('uses configured keys and the keys file, with no dev key', () => {
    const files = memoryFiles({ '/k': 'sk-file-12345678\n' });
    const loaded = loadApiKeys(api({ apiKeys: ['sk-env-12345678'], apiKeysFile: '/k', adminKeys: ['sk-adm-12345678'] }), '/state', files);
    expect(loaded.devKey).toBeNull();
    expect(loaded.store.size).toBe(3);
    expect(files.files['/state/dev-api-key']).toBeUndefined();
    expect(() => loadApiKeys(api({ apiKeysFile: '/missing' }), '/s', files)).toThrow(/FLYWHEEL_API_KEYS_FILE \/missing cannot be read/);
  });
});
