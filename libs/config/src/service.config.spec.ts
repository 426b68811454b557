import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from './config.loader';
import { POLICY_ENV_DOCS, loadPolicyConfig } from './policy.config';
import { ENV_DOCS, loadGatewayConfig, loadServiceConfig } from './service.config';

describe('service config', () => {
  it('fills every default from an empty environment', () => {
    const c = loadGatewayConfig({});
    expect(c.http.port).toBe(8080);
    expect(c.nats.servers).toEqual(['nats://127.0.0.1:4222']);
    expect(c.redis.url).toBe('redis://127.0.0.1:6379');
    expect(c.database.url).toBeNull();
    expect(c.gateway.healthTimeoutMs).toBe(500);
    expect(c.gateway.admin.reviewOverlap).toBe(1);
    expect(loadGatewayConfig({ FLYWHEEL_REVIEW_OVERLAP: '3' }).gateway.admin.reviewOverlap).toBe(3);
    expect(loadServiceConfig('policy', {}).http.port).toBe(8081);
  });

  it('reads each service its own port and treats blank as unset', () => {
    expect(loadServiceConfig('trainer', { FLYWHEEL_TRAINER_PORT: '9000', FLYWHEEL_POLICY_PORT: 'x' }).http.port).toBe(9000);
    expect(loadServiceConfig('reward', { FLYWHEEL_REWARD_PORT: '  ' }).http.port).toBe(8082);
    expect(loadGatewayConfig({ NATS_URL: 'nats://a:1, nats://b:2' }).nats.servers).toEqual(['nats://a:1', 'nats://b:2']);
  });

  it('parses the policy engine settings', () => {
    const c = loadPolicyConfig({ FLYWHEEL_MODEL_DTYPE: 'bf16', FLYWHEEL_THREADS: '2' });
    expect(c.policy).toMatchObject({ model: 'models/stories260K', dtype: 'bf16', threads: 2, maxSeqs: 32 });
    expect(() => loadPolicyConfig({ FLYWHEEL_MODEL_DTYPE: 'fp8' })).toThrow(/FLYWHEEL_MODEL_DTYPE must be one of f32, bf16/);
  });

  it.each([
    ['FLYWHEEL_GATEWAY_PORT', 'abc', /FLYWHEEL_GATEWAY_PORT must be an integer between 1 and 65535 \(got "abc"\)/],
    ['FLYWHEEL_GATEWAY_PORT', '70000', /FLYWHEEL_GATEWAY_PORT must be an integer/],
    ['REDIS_URL', 'http://x', /REDIS_URL must be a URL with scheme redis or rediss/],
    ['DATABASE_URL', 'mysql://x', /DATABASE_URL must be a URL with scheme postgres or postgresql/],
    ['FLYWHEEL_LOG_LEVEL', 'loud', /FLYWHEEL_LOG_LEVEL must be one of error, warn, log, debug, verbose/],
    ['FLYWHEEL_REVIEW_OVERLAP', '2', /FLYWHEEL_REVIEW_OVERLAP must be an odd integer between 1 and 15/],
    ['FLYWHEEL_REVIEW_OVERLAP', '0', /FLYWHEEL_REVIEW_OVERLAP must be an odd integer/],
    ['FLYWHEEL_REVIEW_OVERLAP', 'three', /FLYWHEEL_REVIEW_OVERLAP must be an odd integer/],
  ])('names %s=%s in a single-line error', (name, value, message) => {
    let caught: unknown;
    try {
      loadGatewayConfig({ [name]: value });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).variable).toBe(name);
    expect((caught as ConfigError).message).toMatch(message);
    expect((caught as ConfigError).message).not.toContain('\n');
  });

  it('documents every variable it reads, and the README lists them all', () => {
    const readme = readFileSync(path.resolve(__dirname, '../../../README.md'), 'utf8');
    const docs = [...ENV_DOCS, ...POLICY_ENV_DOCS];
    for (const { name } of docs) expect(readme).toContain(`\`${name}\``);
    for (const file of ['service.config.ts', 'policy.config.ts', 'trainer.config.ts']) {
      const source = readFileSync(path.resolve(__dirname, file), 'utf8');
      const read = new Set([...source.matchAll(/\b([A-Z][A-Z0-9_]{3,}): [a-zA-Z]+Var\(/g)].map((m) => m[1]));
      for (const name of read) expect(docs.map((d) => d.name)).toContain(name);
    }
  });
});
