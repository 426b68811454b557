/**
 * Training runs and the RL loop on the wire: a run as the store keeps it (kind, status, parent loop, stage,
 * summary metrics), its per-step metric series, the admin API's runs routes, and the trainer's loop control
 * on `trainer.loop`. Shared by the trainer, the gateway and the admin UI (which imports this file directly,
 * so it depends on zod and ./subjects only). Not job data (trainer.schemas.ts), not the database rows.
 */
import { z } from 'zod';
import { SUBJECTS } from './subjects';

const isoDate = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO 8601 date-time');

/** `loop` is one pass of the RL loop (reward-train → ppo → eval → promotion); its stages are child runs. */
export const TRAINING_RUN_KINDS = ['sft', 'reward-train', 'ppo', 'dpo', 'eval', 'loop', 'moderation-train', 'grpo', 'kto', 'external'] as const;
export const trainingRunKindSchema = z.enum(TRAINING_RUN_KINDS);
export type TrainingRunKind = z.infer<typeof trainingRunKindSchema>;

export const TRAINING_RUN_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export const trainingRunStatusSchema = z.enum(TRAINING_RUN_STATUSES);
export type TrainingRunStatus = z.infer<typeof trainingRunStatusSchema>;

/**
 * The metrics of one optimizer step, by name (open-ended: reward_mean, kl, loss, time_rollout_s, …).
 * null where a value was not finite or not measured at that step.
 */
export const trainingStepMetricsSchema = z.record(z.string(), z.number().nullable());
export type TrainingStepMetrics = z.infer<typeof trainingStepMetricsSchema>;

export const trainingMetricPointSchema = z.object({
  step: z.int().nonnegative(),
  metrics: trainingStepMetricsSchema,
  /** When the store received it. */
  at: isoDate.optional(),
});
export type TrainingMetricPoint = z.infer<typeof trainingMetricPointSchema>;

export const trainingRunSchema = z.object({
  id: z.string(),
  kind: trainingRunKindSchema,
  status: trainingRunStatusSchema,
  /** The loop run this is a stage of; null for a top-level run. */
  parentRunId: z.string().nullable(),
  /** For a loop: the stage running now (or the last one run). */
  stage: z.string().nullable(),
  baseVersion: z.string().nullable(),
  exportId: z.string().nullable(),
  config: z.record(z.string(), z.unknown()),
  /** Summary metrics (final losses, accuracies, counts, base model path…): numbers mostly, not only. */
  metrics: z.record(z.string(), z.unknown()),
  error: z.string().nullable(),
  createdAt: isoDate,
  startedAt: isoDate.nullable(),
  finishedAt: isoDate.nullable(),
});
export type TrainingRun = z.infer<typeof trainingRunSchema>;

/** A model version a run produced (model_versions.training_run_id). */
export const trainingRunVersionSchema = z.object({
  id: z.string(),
  role: z.string(),
  status: z.string(),
  /** The run that registered it: this run, or one of its children for a loop. */
  runId: z.string(),
});
export type TrainingRunVersion = z.infer<typeof trainingRunVersionSchema>;

export const trainingRunDetailSchema = trainingRunSchema.extend({
  /** Per-step metrics, by step ascending. */
  series: z.array(trainingMetricPointSchema),
  /** Stage runs of a loop, oldest first. */
  children: z.array(trainingRunSchema),
  /** Versions registered by this run and by its children, oldest first. */
  versions: z.array(trainingRunVersionSchema),
});
export type TrainingRunDetail = z.infer<typeof trainingRunDetailSchema>;

// ---------------------------------------------------------------- admin API: /admin/api/runs

/** GET /admin/api/runs: top-level runs, newest first; `before` is the id of the last run of the previous page. */
export const adminRunsQuerySchema = z
  .object({
    kind: trainingRunKindSchema.optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
    before: z.string().min(1).max(128).optional(),
  })
  .strict();
export type AdminRunsQuery = z.input<typeof adminRunsQuerySchema>;

export const adminRunListSchema = z.object({
  object: z.literal('list'),
  data: z.array(trainingRunSchema),
  /** More runs older than the last of `data` (ask again with before=<its id>). */
  has_more: z.boolean(),
});
export type AdminRunList = z.infer<typeof adminRunListSchema>;

// ---------------------------------------------------------------- the RL loop: trainer.loop

/** The trainer answers loop control here (request/reply, Nest wire format); also SUBJECTS.trainer.loop. */
export const LOOP_SUBJECT = SUBJECTS.trainer.loop;

export const LOOP_ACTIONS = ['status', 'pause', 'resume', 'start'] as const;
/** status: just report; pause / resume: stop or allow scheduled runs; start: one run now (even when paused). */
export const loopControlRequestSchema = z.object({ action: z.enum(LOOP_ACTIONS) }).strict();
export type LoopControlRequest = z.infer<typeof loopControlRequestSchema>;

/** The stages of a loop run, in order (the loop run's `stage`; `done` once it ends well). */
export const LOOP_STAGES = ['queued', 'prepare', 'moderation-train', 'sft', 'reward-train', 'publish-reward', 'ppo', 'grpo', 'external', 'eval', 'done'] as const;

/**
 * What a `loop` job reports through job.updateProgress: the stage it is in, and for a stage that waits on someone
 * (`external`: a checkpoint from a cluster trainer) what it waits for.
 */
export const loopJobProgressSchema = z.object({ stage: z.string(), message: z.string().optional() });

/** A stage's progress as its BullMQ job reports it: optimizer step (or PPO iteration) `step` of `steps`. */
export const loopStageProgressSchema = z.object({ step: z.int().nonnegative(), steps: z.int().positive() });
export type LoopStageProgress = z.infer<typeof loopStageProgressSchema>;

/**
 * Why a start queued nothing: a run is already queued or running; nothing to train on (no approved preference
 * pairs, or too few distinct prompts to hold one out for the eval gate); the store cannot be read. The admin API
 * answers each as an error of its own status (apps/gateway/src/admin/admin-loop.service.ts).
 */
export const LOOP_START_REFUSALS = ['already_running', 'no_training_data', 'store_unavailable'] as const;
export const loopStartRefusalSchema = z.object({ code: z.enum(LOOP_START_REFUSALS), message: z.string() });
export type LoopStartRefusal = z.infer<typeof loopStartRefusalSchema>;

export const loopStatusSchema = z.object({
  paused: z.boolean(),
  running: z
    .object({
      runId: z.string(),
      /** One of LOOP_STAGES, or a stage a newer trainer added. */
      stage: z.string(),
      startedAt: isoDate,
      /** The running stage's job progress; absent before its first step and for stages that count none. */
      progress: loopStageProgressSchema.optional(),
      /** What a waiting stage waits for (`external`: the hand-off folder and the publish command it expects). */
      message: z.string().optional(),
    })
    .nullable(),
  /** Approved feedback since the last loop run started, and how many trigger the next. */
  approvedSinceLastRun: z.int().nonnegative(),
  minNewApproved: z.int().nonnegative(),
  /** Period of the scheduled check; null when runs start by hand only. */
  scheduleMs: z.number().nonnegative().nullable(),
  lastRun: z.object({ runId: z.string(), status: trainingRunStatusSchema, finishedAt: isoDate.nullable() }).nullable(),
  /** What the action did or why it did nothing ("a run is already running"); on a status, what is wrong (the store). */
  message: z.string().optional(),
  /** Set on the answer to a start that queued nothing. */
  refused: loopStartRefusalSchema.optional(),
});
export type LoopStatus = z.infer<typeof loopStatusSchema>;

/**
 * POST /admin/api/loop (CSRF): forwarded to trainer.loop; the answer is the LoopStatus, or for a refused start the
 * OpenAI error of its refusal (409 loop_already_running / no_training_data, 503 store_unavailable).
 */
export const adminLoopActionBodySchema = z.object({ action: z.enum(['pause', 'resume', 'start']) }).strict();
export type AdminLoopActionBody = z.infer<typeof adminLoopActionBodySchema>;
