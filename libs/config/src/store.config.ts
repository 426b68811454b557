/**
 * The gateway's data-flywheel settings: how long feedback on a not-yet-recorded completion is accepted,
 * the longest pause of the store writer between retries while the database is down, and how often the
 * backlog gauges (review backlog, store-writer consumer pending) are refreshed. The database
 * itself is DATABASE_URL / FLYWHEEL_STATE_DIR (CommonConfig). A pure parse of the environment.
 */
import { z } from 'zod';
import { intVar } from './env.fields';
import { parseEnv, type Env } from './config.loader';

export const storeEnv = z.object({
  FLYWHEEL_FEEDBACK_INFLIGHT_WINDOW_MS: intVar(600_000, 1_000, 86_400_000),
  FLYWHEEL_STORE_RETRY_MAX_MS: intVar(30_000, 100, 600_000),
  FLYWHEEL_BACKLOG_METRICS_MS: intVar(15_000, 100, 3_600_000),
});

export interface GatewayStoreConfig {
  /**
   * Feedback naming a completion that is neither in JetStream nor in the store is accepted while the
   * completion's id is younger than this (it may still be streaming), and answered 404 after.
   */
  feedbackInflightWindowMs: number;
  /** Cap of the store writer's exponential backoff (redelivery delay) on database errors. */
  writerRetryMaxMs: number;
  /** Refresh period of flywheel_review_backlog and flywheel_store_consumer_pending (one count query + two consumer infos). */
  backlogMetricsMs: number;
}

export function loadGatewayStoreConfig(env: Env): GatewayStoreConfig {
  const e = parseEnv(storeEnv, env);
  return {
    feedbackInflightWindowMs: e.FLYWHEEL_FEEDBACK_INFLIGHT_WINDOW_MS,
    writerRetryMaxMs: e.FLYWHEEL_STORE_RETRY_MAX_MS,
    backlogMetricsMs: e.FLYWHEEL_BACKLOG_METRICS_MS,
  };
}
