/**
 * The gateway's admin-API settings: how long an admin session lives, how many sessions are held at
 * once, where the admin UI's built files are, and how many reviewers decide an item. The admin keys
 * themselves are FLYWHEEL_ADMIN_KEYS (gateway-api.config.ts). A pure parse of the environment.
 */
import { z } from 'zod';
import { intVar, stringVar } from './env.fields';
import { parseEnv, type Env } from './config.loader';

const OVERLAP_EXPECT = 'must be an odd integer between 1 and 15 (a majority of an odd number of decisions is never a tie)';

export const adminEnv = z.object({
  FLYWHEEL_ADMIN_SESSION_TTL_MS: intVar(43_200_000, 60_000, 30 * 86_400_000),
  FLYWHEEL_ADMIN_MAX_SESSIONS: intVar(1_000, 1, 1_000_000),
  FLYWHEEL_ADMIN_UI_DIR: stringVar('apps/admin-ui/dist'),
  FLYWHEEL_REVIEW_OVERLAP: z
    .string()
    .regex(/^\d+$/, OVERLAP_EXPECT)
    .transform(Number)
    .refine((n) => n >= 1 && n <= 15 && n % 2 === 1, OVERLAP_EXPECT)
    .default(1),
});

export interface GatewayAdminConfig {
  /** A session expires this long after login (not extended by use). */
  sessionTtlMs: number;
  /** Most live sessions; a login beyond it evicts the oldest. */
  maxSessions: number;
  /** The admin UI's static files, served under /admin (relative to the working directory). */
  uiDir: string;
  /**
   * Reviewers' decisions a feedback needs: it is approved or rejected by the majority of the latest `reviewOverlap`
   * reviewers' decisions (one per reviewer) and stays pending until that many are in. 1: one decision decides.
   */
  reviewOverlap: number;
}

export function loadGatewayAdminConfig(env: Env): GatewayAdminConfig {
  const e = parseEnv(adminEnv, env);
  return {
    sessionTtlMs: e.FLYWHEEL_ADMIN_SESSION_TTL_MS,
    maxSessions: e.FLYWHEEL_ADMIN_MAX_SESSIONS,
    uiDir: e.FLYWHEEL_ADMIN_UI_DIR,
    reviewOverlap: e.FLYWHEEL_REVIEW_OVERLAP,
  };
}
