/**
 * The typed configuration tree of each service, built from environment variables. The README's
 * configuration table mirrors ENV_DOCS below; a test keeps them in step.
 */
import { z } from 'zod';
import type { ServiceName } from '@flywheel/contracts';
import { enumVar, intVar, optionalStringVar, optionalUrlVar, portVar, stringVar, urlListVar, urlVar } from './env.fields';
import { parseEnv, type Env } from './config.loader';
import { loadGatewayApiConfig, type GatewayApiConfig } from './gateway-api.config';
import { loadGatewayModerationConfig, type GatewayModerationConfig } from './moderation.config';
import { loadGatewayStoreConfig, type GatewayStoreConfig } from './store.config';
import { loadGatewayAdminConfig, type GatewayAdminConfig } from './admin.config';

export const DEFAULT_PORTS: Record<ServiceName, number> = {
  gateway: 8080,
  policy: 8081,
  reward: 8082,
  moderation: 8083,
  trainer: 8084,
};

const portVarName = (service: ServiceName) => `FLYWHEEL_${service.toUpperCase()}_PORT`;

const commonEnv = z.object({
  NATS_URL: urlListVar(['nats', 'tls', 'ws', 'wss'], 'nats://127.0.0.1:4222'),
  REDIS_URL: urlVar(['redis', 'rediss'], 'redis://127.0.0.1:6379'),
  DATABASE_URL: optionalUrlVar(['postgres', 'postgresql']),
  FLYWHEEL_STATE_DIR: stringVar('.state'),
  FLYWHEEL_LOG_LEVEL: enumVar(['error', 'warn', 'log', 'debug', 'verbose'] as const, 'log'),
  FLYWHEEL_INSTANCE_ID: optionalStringVar(),
  FLYWHEEL_HOST: stringVar('0.0.0.0'),
  FLYWHEEL_REQUEST_TIMEOUT_MS: intVar(10_000, 100, 600_000),
});

export interface CommonConfig {
  service: ServiceName;
  instanceId: string;
  http: { host: string; port: number };
  nats: { servers: string[]; requestTimeoutMs: number };
  redis: { url: string };
  /** The store's Postgres; unset outside the launcher means no store (the launcher sets it to its embedded Postgres). */
  database: { url: string | null };
  stateDir: string;
  logLevel: 'error' | 'warn' | 'log' | 'debug' | 'verbose';
}

export interface GatewayConfig extends CommonConfig {
  gateway: { healthTimeoutMs: number; bodyLimitBytes: number; api: GatewayApiConfig; moderation: GatewayModerationConfig; store: GatewayStoreConfig; admin: GatewayAdminConfig };
}

function common(service: ServiceName, env: Env): CommonConfig {
  const e = parseEnv(commonEnv, env);
  const portName = portVarName(service);
  const port = parseEnv(z.object({ [portName]: portVar(DEFAULT_PORTS[service]) }), env)[portName];
  return {
    service,
    instanceId: e.FLYWHEEL_INSTANCE_ID ?? `${service}-${process.pid}`,
    http: { host: e.FLYWHEEL_HOST, port: z.number().parse(port) },
    nats: { servers: e.NATS_URL, requestTimeoutMs: e.FLYWHEEL_REQUEST_TIMEOUT_MS },
    redis: { url: e.REDIS_URL },
    database: { url: e.DATABASE_URL ?? null },
    stateDir: e.FLYWHEEL_STATE_DIR,
    logLevel: e.FLYWHEEL_LOG_LEVEL,
  };
}

export function loadServiceConfig(service: Exclude<ServiceName, 'gateway'>, env: Env): CommonConfig {
  return common(service, env);
}

export function loadGatewayConfig(env: Env): GatewayConfig {
  const g = parseEnv(
    z.object({
      FLYWHEEL_HEALTH_TIMEOUT_MS: intVar(500, 10, 60_000),
      FLYWHEEL_BODY_LIMIT_BYTES: intVar(1_048_576, 1024, 256 * 1_048_576),
    }),
    env,
  );
  return {
    ...common('gateway', env),
    gateway: {
      healthTimeoutMs: g.FLYWHEEL_HEALTH_TIMEOUT_MS,
      bodyLimitBytes: g.FLYWHEEL_BODY_LIMIT_BYTES,
      api: loadGatewayApiConfig(env),
      moderation: loadGatewayModerationConfig(env),
      store: loadGatewayStoreConfig(env),
      admin: loadGatewayAdminConfig(env),
    },
  };
}

/** Every variable Flywheel reads, its default and meaning: the source of the README's table. */
export const ENV_DOCS: ReadonlyArray<{ name: string; default: string; meaning: string }> = [
  { name: 'NATS_URL', default: 'nats://127.0.0.1:4222', meaning: 'NATS server(s), comma-separated; JetStream must be enabled' },
  { name: 'REDIS_URL', default: 'redis://127.0.0.1:6379', meaning: 'Redis for the BullMQ training queues' },
  { name: 'DATABASE_URL', default: '(unset: `npm start` runs the embedded Postgres under the state folder and sets it for every service)', meaning: 'PostgreSQL for the flywheel store' },
  { name: 'FLYWHEEL_STATE_DIR', default: '.state', meaning: 'project-local folder for the launcher-started NATS/Redis data and the embedded database' },
  { name: 'FLYWHEEL_LOG_LEVEL', default: 'log', meaning: 'error, warn, log, debug or verbose' },
  { name: 'FLYWHEEL_INSTANCE_ID', default: '<service>-<pid>', meaning: 'name of this replica in pings, metrics and logs' },
  { name: 'FLYWHEEL_HOST', default: '0.0.0.0', meaning: 'address each service binds its HTTP port to' },
  { name: 'FLYWHEEL_REQUEST_TIMEOUT_MS', default: '10000', meaning: 'default timeout of a NATS request between services' },
  { name: 'FLYWHEEL_GATEWAY_PORT', default: '8080', meaning: 'gateway HTTP port (OpenAI API, /healthz, /metrics)' },
  { name: 'FLYWHEEL_POLICY_PORT', default: '8081', meaning: 'policy health/metrics port' },
  { name: 'FLYWHEEL_REWARD_PORT', default: '8082', meaning: 'reward health/metrics port' },
  { name: 'FLYWHEEL_MODERATION_PORT', default: '8083', meaning: 'moderation health/metrics port' },
  { name: 'FLYWHEEL_TRAINER_PORT', default: '8084', meaning: 'trainer health/metrics port' },
  { name: 'FLYWHEEL_HEALTH_TIMEOUT_MS', default: '500', meaning: 'how long /healthz waits for each service to answer its ping' },
  { name: 'FLYWHEEL_BODY_LIMIT_BYTES', default: '1048576', meaning: 'largest accepted HTTP request body (larger: 413)' },
  { name: 'FLYWHEEL_MODERATION_POLICY', default: '(unset: libs/moderation/data/policy.default.json)', meaning: 'moderation policy JSON: action and threshold per category and direction, extra rules' },
  { name: 'FLYWHEEL_MODERATION_LEXICON', default: '(unset: libs/moderation/data/lexicon.json)', meaning: 'moderation lexicon JSON: terms and patterns per category' },
  { name: 'FLYWHEEL_MODERATION_MODEL_DIR', default: '(unset: libs/moderation/data/model)', meaning: 'folder of the moderation classifier (model.json + weights.bin)' },
  { name: 'FLYWHEEL_MODERATION_STREAM_WINDOW_CHARS', default: '512', meaning: 'sliding window of the streamed output check, in characters' },
  { name: 'FLYWHEEL_MODERATION_STREAM_HOLDBACK_CHARS', default: '64', meaning: 'streamed characters held back until no rule match can start in them' },
  { name: 'FLYWHEEL_MODERATION_STREAM_CLASSIFY_EVERY_CHARS', default: '64', meaning: 'new streamed characters between runs of the output classifier (the rules read every delta)' },
  { name: 'FLYWHEEL_MODERATION_TIMEOUT_MS', default: '2000', meaning: 'gateway: longest wait for the moderation service; the prompt check then runs in the gateway, /v1/moderations answers 504' },
  { name: 'FLYWHEEL_API_KEYS', default: '(unset)', meaning: 'comma-separated bearer keys of the OpenAI API; with no key at all the gateway creates a dev key in <state>/dev-api-key and prints it at start' },
  { name: 'FLYWHEEL_API_KEYS_FILE', default: '(unset)', meaning: 'file of API keys, one per line: `<key> [name=<id>] [rpm=<n>] [tpm=<n>]`, `#` comments' },
  { name: 'FLYWHEEL_ADMIN_KEYS', default: '(unset)', meaning: 'comma-separated keys of the admin API (refused on /v1)' },
  { name: 'FLYWHEEL_RATE_LIMIT_RPM', default: '600', meaning: 'requests per minute per API key (0: unlimited)' },
  { name: 'FLYWHEEL_RATE_LIMIT_TPM', default: '1000000', meaning: 'prompt + completion tokens per minute per API key (0: unlimited)' },
  { name: 'FLYWHEEL_FEEDBACK_INFLIGHT_WINDOW_MS', default: '600000', meaning: 'feedback on a completion not yet recorded is accepted while the completion id is younger than this, then answered 404' },
  { name: 'FLYWHEEL_STORE_RETRY_MAX_MS', default: '30000', meaning: 'longest pause of the store writer between retries while the database is unreachable' },
  { name: 'FLYWHEEL_BACKLOG_METRICS_MS', default: '15000', meaning: 'gateway: how often flywheel_review_backlog (feedback pending review) and flywheel_store_consumer_pending (store-writer JetStream backlog) are refreshed' },
  { name: 'FLYWHEEL_ADMIN_SESSION_TTL_MS', default: '43200000', meaning: 'lifetime of an admin session (cookie and server-side entry), from login' },
  { name: 'FLYWHEEL_ADMIN_MAX_SESSIONS', default: '1000', meaning: 'most admin sessions held at once; a login beyond it ends the oldest' },
  { name: 'FLYWHEEL_ADMIN_UI_DIR', default: 'apps/admin-ui/dist', meaning: 'built admin UI served under /admin (503 while missing)' },
  { name: 'FLYWHEEL_REVIEW_OVERLAP', default: '1', meaning: 'reviewers\' decisions a feedback needs (odd, 1–15): it stays pending until that many are in, then the majority of the latest that many (one per reviewer) approves or rejects it' },
  { name: 'FLYWHEEL_QUEUE_PREFIX', default: 'bull', meaning: 'trainer: BullMQ key prefix of the training queues in Redis' },
  { name: 'FLYWHEEL_TRAINER_LOCK_MS', default: '30000', meaning: 'trainer: BullMQ job lock; a job whose trainer died is run again (and resumes from its checkpoint) after about this long' },
  { name: 'FLYWHEEL_TRAINER_THREADS', default: '0 (one per core)', meaning: 'trainer: native thread count of training jobs' },
  { name: 'FLYWHEEL_LOOP_MIN_NEW_APPROVED', default: '100', meaning: 'trainer: the RL loop starts a run when this many approved preference pairs arrived since the last run (0: never by count)' },
  { name: 'FLYWHEEL_LOOP_SCHEDULE_MS', default: '0 (off)', meaning: 'trainer: also start a loop run this often when any new approved pair exists' },
  { name: 'FLYWHEEL_LOOP_CHECK_MS', default: '30000', meaning: 'trainer: how often the loop checks its triggers' },
  { name: 'FLYWHEEL_LOOP_SFT', default: 'off', meaning: 'trainer: auto fine-tunes the policy on approved answers and corrections (an sft export) before a loop run\'s policy stage, which then starts from and keeps its KL to that model; off skips it' },
  { name: 'FLYWHEEL_LOOP_ALGORITHM', default: 'ppo', meaning: 'trainer: the policy optimiser of a loop run: ppo, or the critic-free grpo, rloo, reinforce++, rft (online best-of-n rejection-sampling fine-tuning) or online-dpo (iterative DPO on best-over-worst pairs of its own samples), or external (writes a TRL/OpenRLHF hand-off under <state>/handoff/<run> and waits for a checkpoint published with `flywheel models publish --run <run>`)' },
  { name: 'FLYWHEEL_LOOP_EXTERNAL_WAIT_MS', default: '604800000 (7 days)', meaning: 'trainer: how long an external loop stage waits for the checkpoint published under its run id before the run fails' },
  { name: 'FLYWHEEL_LOOP_INDEPENDENT_RM', default: 'off', meaning: 'trainer: on splits a loop run\'s approved pairs by prompt, trains the reward model on one side and an independent one on the other (30% of prompts), and the eval gate also scores the candidate with the independent one (minIndependentGainStd)' },
  { name: 'FLYWHEEL_LOOP_MODERATION', default: 'auto', meaning: "trainer: auto starts a loop run with a moderation-train stage when reviewers' moderation labels exist; off never does" },
  { name: 'FLYWHEEL_GENERATE_TIMEOUT_MS', default: '60000', meaning: 'longest wait for the policy\'s first frame, and between two frames, of a generation' },
  { name: 'FLYWHEEL_STREAM_MUX', default: 'on', meaning: 'gateway: on asks the policy to send the frames of all of this gateway\'s streams as one NATS message per engine step (the stream mux); off, one message per request per step' },
];
