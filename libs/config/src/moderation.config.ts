/**
 * Moderation settings, read by the moderation service and by the gateway (which runs the streaming
 * output check in-process): where the policy, lexicon and classifier files are, and the stream
 * window. Unset paths mean the built-in files under libs/moderation/data.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { intVar } from './env.fields';
import { ConfigError, parseEnv, type Env } from './config.loader';

export interface ModerationConfig {
  policyPath: string | null;
  lexiconPath: string | null;
  modelDir: string | null;
  stream: { windowChars: number; holdbackChars: number; classifyEveryChars: number };
}

const fileVar = (mustContain?: string) =>
  z
    .string()
    .transform((p) => path.resolve(p))
    .refine((p) => existsSync(mustContain ? path.join(p, mustContain) : p), mustContain ? `must be a folder holding ${mustContain}` : 'must be a path to an existing file')
    .optional();

/** The gateway's view: the same files and stream window (it runs the output check in-process), plus how long it waits on the service. */
export interface GatewayModerationConfig extends ModerationConfig {
  /** Longest wait for moderation.check; the prompt check then runs in-process, /v1/moderations answers 504. */
  checkTimeoutMs: number;
}

export function loadGatewayModerationConfig(env: Env): GatewayModerationConfig {
  const e = parseEnv(z.object({ FLYWHEEL_MODERATION_TIMEOUT_MS: intVar(2_000, 10, 600_000) }), env);
  return { ...loadModerationConfig(env), checkTimeoutMs: e.FLYWHEEL_MODERATION_TIMEOUT_MS };
}

export function loadModerationConfig(env: Env): ModerationConfig {
  const e = parseEnv(
    z.object({
      FLYWHEEL_MODERATION_POLICY: fileVar(),
      FLYWHEEL_MODERATION_LEXICON: fileVar(),
      FLYWHEEL_MODERATION_MODEL_DIR: fileVar('model.json'),
      FLYWHEEL_MODERATION_STREAM_WINDOW_CHARS: intVar(512, 64, 65_536),
      FLYWHEEL_MODERATION_STREAM_HOLDBACK_CHARS: intVar(64, 0, 1024),
      FLYWHEEL_MODERATION_STREAM_CLASSIFY_EVERY_CHARS: intVar(64, 1, 65_536),
    }),
    env,
  );
  const window = e.FLYWHEEL_MODERATION_STREAM_WINDOW_CHARS;
  const holdback = e.FLYWHEEL_MODERATION_STREAM_HOLDBACK_CHARS;
  if (holdback * 2 >= window) {
    const name = 'FLYWHEEL_MODERATION_STREAM_HOLDBACK_CHARS';
    throw new ConfigError(name, `invalid configuration: ${name} must be less than half of FLYWHEEL_MODERATION_STREAM_WINDOW_CHARS (got ${holdback} with a window of ${window})`);
  }
  return {
    policyPath: e.FLYWHEEL_MODERATION_POLICY ?? null,
    lexiconPath: e.FLYWHEEL_MODERATION_LEXICON ?? null,
    modelDir: e.FLYWHEEL_MODERATION_MODEL_DIR ?? null,
    stream: {
      windowChars: e.FLYWHEEL_MODERATION_STREAM_WINDOW_CHARS,
      holdbackChars: e.FLYWHEEL_MODERATION_STREAM_HOLDBACK_CHARS,
      classifyEveryChars: e.FLYWHEEL_MODERATION_STREAM_CLASSIFY_EVERY_CHARS,
    },
  };
}
