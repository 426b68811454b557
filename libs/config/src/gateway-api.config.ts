/**
 * The gateway's OpenAI-API settings: where API keys come from, admin keys, per-key rate limits and
 * how long to wait on the policy. Parsed once at boot with the rest of the gateway's config; key
 * files are read by the gateway's auth, not here (this stays a pure parse of the environment).
 */
import { z } from 'zod';
import { enumVar, intVar, optionalStringVar } from './env.fields';
import { parseEnv, type Env } from './config.loader';

/** Comma-separated secrets; blanks dropped. */
const keyListVar = () =>
  z
    .string()
    .default('')
    .transform((s) => s.split(',').map((k) => k.trim()).filter(Boolean))
    .refine((keys) => keys.every((k) => k.length >= 8 && !/\s/.test(k)), 'must be comma-separated keys of at least 8 characters without spaces');

export const gatewayApiEnv = z.object({
  FLYWHEEL_API_KEYS: keyListVar(),
  FLYWHEEL_API_KEYS_FILE: optionalStringVar(),
  FLYWHEEL_ADMIN_KEYS: keyListVar(),
  FLYWHEEL_RATE_LIMIT_RPM: intVar(600, 0, 10_000_000),
  FLYWHEEL_RATE_LIMIT_TPM: intVar(1_000_000, 0, 1_000_000_000),
  FLYWHEEL_GENERATE_TIMEOUT_MS: intVar(60_000, 100, 3_600_000),
  FLYWHEEL_STREAM_MUX: enumVar(['on', 'off'] as const, 'on'),
});

export interface GatewayApiConfig {
  /** Bearer keys for /v1; empty together with keysFile → the gateway creates a dev key in the state folder. */
  apiKeys: string[];
  /** One key per line: `<key> [name=<id>] [rpm=<n>] [tpm=<n>]`; `#` starts a comment. */
  apiKeysFile: string | null;
  /** Keys of the admin API only; refused on /v1. */
  adminKeys: string[];
  /** Per-key defaults; 0 = unlimited. A keys-file line may override them for its key. */
  rateLimit: { requestsPerMinute: number; tokensPerMinute: number };
  /** Longest wait for the policy's first frame and between two frames. */
  generateTimeoutMs: number;
  /** Ask the policy for its stream mux: one NATS message per engine step for all of this gateway's streams. */
  streamMux: boolean;
}

export function loadGatewayApiConfig(env: Env): GatewayApiConfig {
  const e = parseEnv(gatewayApiEnv, env);
  return {
    apiKeys: e.FLYWHEEL_API_KEYS,
    apiKeysFile: e.FLYWHEEL_API_KEYS_FILE ?? null,
    adminKeys: e.FLYWHEEL_ADMIN_KEYS,
    rateLimit: { requestsPerMinute: e.FLYWHEEL_RATE_LIMIT_RPM, tokensPerMinute: e.FLYWHEEL_RATE_LIMIT_TPM },
    generateTimeoutMs: e.FLYWHEEL_GENERATE_TIMEOUT_MS,
    streamMux: e.FLYWHEEL_STREAM_MUX === 'on',
  };
}
