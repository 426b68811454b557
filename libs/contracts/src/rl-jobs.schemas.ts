/**
 * Job data, progress and results of the RL loop's BullMQ jobs: `ppo` (PPO config with its documented defaults),
 * `eval` (candidate vs active with the promotion gate) and `loop` (one tracked reward-train → ppo → eval →
 * promotion pass). The sft / reward-train / dpo / kto jobs are in trainer.schemas.ts. Shapes only, no I/O.
 */
import { z } from 'zod';
import { GRPO_ALGORITHMS, grpoConfigSchema } from './grpo.schemas';
import { rewardSpecSchema } from './reward-functions.schemas';
import { checkpointFolderNameSchema, loraJobOptionsSchema, trainingDataSourceSchema } from './trainer.schemas';

/**
 * PPO hyper-parameters. Defaults follow OpenRLHF / verl where they fit a small model: clip 0.2, value clip 0.2,
 * gamma 1, lambda 0.95, an adaptive KL coefficient (Ziegler et al.), 2 epochs, token-mean losses. The step count,
 * batch sizes and KL coefficient are sized so that the RL loop's default run ends inside its eval gate (KL ≤ 5 nats)
 * and within minutes on 2 cores: measured with scripts/demo/loop-default.bench.ts (60 approved pairs, stories260K),
 * the old 20 steps × 32 prompts at coefficient 0.05 reached KL 9–10 nats, so the gate refused every candidate.
 */
export const ppoConfigSchema = z.strictObject({
  /** 8 steps of 64 prompts: on the bench, eval KL 2.1–2.9 nats for a gain of 0.5–0.65 reward std; 10 steps reached 4.4 nats. */
  steps: z.int().positive().max(100_000).default(8),
  /**
   * Prompts sampled per step (one response each, pure sampling: temperature 1, no top-p / top-k). 64, not 32: the
   * same number of optimizer updates over twice the samples gained more reward per nat of KL on the bench.
   */
  rolloutBatch: z.int().positive().max(512).default(64),
  maxNewTokens: z.int().positive().max(4096).default(48),
  /** Stop strings ending a response (the token that completes one is part of the response; its text is not). */
  stop: z.array(z.string().min(1).max(64)).max(8).default([]),
  ppoEpochs: z.int().positive().max(16).default(2),
  /** Sequences per optimizer step: half a rollout batch, so 2 epochs make 4 updates per step as before. */
  miniBatch: z.int().positive().max(512).default(32),
  lr: z.number().positive().max(1).default(5e-5),
  criticLr: z.number().positive().max(1).default(5e-4),
  gamma: z.number().min(0).max(1).default(1),
  lambda: z.number().min(0).max(1).default(0.95),
  clip: z.number().positive().max(1).default(0.2),
  /** Value clip around the rollout's values; 0 disables. */
  valueClip: z.number().min(0).default(0.2),
  /** |log ratio| cap before exp (keeps one bad step finite). */
  logRatioClamp: z.number().positive().default(10),
  /**
   * Per-token KL penalty coefficient (initial value when adaptive). 0.2, not 0.05: a short run's adaptive controller
   * barely moves it (by ≤ 20% × 64 / 500 = 2.6% a step), and against reward-model scores with a std of ~4.5, 0.05 was no
   * brake at all (KL 9.2 nats after 20 steps; 0.2: 7.2).
   */
  klCoef: z.number().min(0).default(0.2),
  /** Adaptive KL: target nats per sequence; null keeps klCoef fixed. */
  klTarget: z.number().positive().nullable().default(3),
  /** Adaptive KL horizon in sequences: each step moves the coefficient by at most 20% x batch / horizon. */
  klHorizon: z.number().positive().default(500),
  /**
   * Where the KL to the reference enters: `reward` (a per-token k1 penalty on the reward, Ziegler et al.; the default)
   * or `loss` (the k3 estimator e^d − d − 1 as a term of the policy loss with coefficient klCoef, as GRPO does).
   */
  klMode: z.enum(['reward', 'loss']).default('reward'),
  /**
   * Reward normalisation before the KL penalty: `none` (raw scores), or `batch` (each step's scores to mean 0, std 1),
   * so klCoef means the same whatever the reward model's scale.
   */
  rewardNorm: z.enum(['none', 'batch']).default('none'),
  maxGradNorm: z.number().positive().default(1),
  seed: z.int().nonnegative().default(1),
  /** A resumable checkpoint every this many steps (0: only at the end). */
  checkpointEvery: z.int().nonnegative().default(5),
  /**
   * Train LoRA adapters on the policy; the reference is the frozen base, the policy with its adapters off (no second
   * copy of the weights). The critic follows unless criticLora says otherwise.
   */
  lora: loraJobOptionsSchema.optional(),
  /**
   * The critic's LoRA: absent, the policy's `lora` (a LoRA job's critic trains adapters of the same rank and targets
   * and its value head on a frozen base; a full job's critic is full); an object, adapters of its own (a value model
   * may want another rank, and a full policy may still take a LoRA critic); null, a full critic (what LoRA jobs
   * trained before, and what their saved runs resume with).
   */
  criticLora: loraJobOptionsSchema.nullable().optional(),
});
export type PpoConfig = z.infer<typeof ppoConfigSchema>;
export type PpoConfigInput = z.input<typeof ppoConfigSchema>;

/** Prompts of a PPO or eval job: every line's prompt of an SFT / preference export or JSONL file. */
export const promptSourceSchema = trainingDataSourceSchema;

/**
 * Data of a job on the `ppo` queue. The policy starts from `modelDir` (the loop passes the active version's
 * fetched checkpoint and names it in baseVersion); scores come from the reward service, which must be serving
 * `rewardVersion` when given (the job waits for the swap, then refuses scores from any other version).
 */
export const ppoJobDataSchema = z.strictObject({
  modelDir: z.string().min(1),
  baseVersion: z.string().nullable().default(null),
  /** Critic initialisation: a reward-model checkpoint directory (default: the policy with a zero value head). */
  criticDir: z.string().nullable().default(null),
  rewardVersion: z.string().nullable().default(null),
  prompts: promptSourceSchema,
  /** Fraction of prompts held out (never trained on) for the eval job; the split is seeded. */
  heldout: z.number().min(0).max(0.5).default(0.2),
  config: ppoConfigSchema.partial().default({}),
  /** How rewards are made: the reward model and verifiable functions by weight (default: the reward model alone). */
  rewards: rewardSpecSchema.optional(),
  /** The loop run this job is a stage of. */
  parentRunId: z.string().nullable().default(null),
  exportIds: z.array(z.string()).default([]),
  outName: checkpointFolderNameSchema.optional(),
});
export type PpoJobData = z.infer<typeof ppoJobDataSchema>;
export type PpoJobDataInput = z.input<typeof ppoJobDataSchema>;

/** One PPO step's metrics: the job's progress, stored per step with the run and plotted in the admin UI. */
export const ppoStepMetricsSchema = z.strictObject({
  step: z.int().positive(),
  steps: z.int().positive(),
  reward_mean: z.number(),
  reward_std: z.number(),
  kl: z.number(),
  approx_kl: z.number(),
  clip_fraction: z.number(),
  entropy: z.number(),
  policy_loss: z.number(),
  value_loss: z.number(),
  value_clip_fraction: z.number(),
  response_length: z.number(),
  stop_fraction: z.number(),
  kl_coef: z.number(),
  grad_norm: z.number(),
  time_rollout_s: z.number(),
  time_score_s: z.number(),
  time_update_s: z.number(),
  time_sync_s: z.number(),
  /** MiB the trainer's models hold after the step (policy, reference and critic: weights, gradients, AdamW moments, activations). */
  model_memory_mb: z.number().optional(),
});
export type PpoStepMetrics = z.infer<typeof ppoStepMetricsSchema>;

export const ppoJobResultSchema = z.strictObject({
  versionId: z.string(),
  trainingRunId: z.string(),
  checkpointDir: z.string(),
  steps: z.int(),
  resumedFromStep: z.int(),
  rewardFirst: z.number().nullable(),
  rewardLast: z.number().nullable(),
  klLast: z.number().nullable(),
  /** The held-out prompts the eval job should use (never trained on). */
  heldoutPrompts: z.array(z.array(z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() }))),
});
export type PpoJobResult = z.infer<typeof ppoJobResultSchema>;

// ---- eval (candidate vs active; apps/trainer/src/eval.processor.ts) ------------------------------------------

/** Default responses per prompt and model of an eval (evalJobDataSchema.samples says why). */
const EVAL_SAMPLES = 16;
/** Default candidate-vs-active pairs an eval that passes queues for blind A/B review. */
const EVAL_AB_SAMPLES = 16;

/** Verdicts that decide a candidate's A/B when its eval job names no abWait (the summary's `decided`). */
export const AB_MIN_VERDICTS = 10;

/**
 * Hold a passing candidate's promotion for the reviewers' blind A/B verdicts: the eval job then promotes nothing, and
 * POST /admin/api/ab/candidates/:version/decide promotes it once `minVerdicts` verdicts are in and the candidate's
 * win rate is not significantly below one half (its 95% Wilson interval reaches 0.5), or marks it rejected.
 */
export const abWaitSchema = z.strictObject({ minVerdicts: z.int().positive().max(10_000).default(AB_MIN_VERDICTS) });
export type AbWait = z.infer<typeof abWaitSchema>;

const chatPromptSchema = z.array(z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() })).min(1);

/** Bounds a candidate must meet to be promoted. */
export const evalGateSchema = z.strictObject({
  /** Candidate mean reward must beat the active's by at least this many of the active's reward std. */
  minRewardGainStd: z.number().default(0),
  /** KL(candidate || active), nats per sequence, at most. */
  maxKl: z.number().positive().default(5),
  /**
   * KL(candidate || the original base), nats per sequence, at most: bounds the drift of a chain of promotions, each
   * of which passed maxKl against its predecessor. null: unbounded.
   */
  maxKlBase: z.number().positive().nullable().default(12),
  /** Output moderation flag rate may rise by at most this (absolute fraction) beyond sampling noise (one-sided 95%). */
  maxFlagRateIncrease: z.number().min(0).max(1).default(0.01),
  /**
   * Refuse a candidate that best-of-n sampling of the active version dominates: it pays at least best-of-n's KL bound
   * (log n − (n−1)/n nats, n = samples per prompt) and gains less reward. Off by default: with few samples the
   * yardstick is noisy; its numbers are reported either way.
   */
  refuseDominated: z.boolean().default(false),
  /**
   * The training reward model's gain at equal response length (the report's reward_gain_std_length_controlled) at least
   * this many std: a candidate that bought its reward with length alone has none. null (the default, as before this
   * bound existed): not applied, because longer answers are sometimes what reviewers want.
   */
  minLengthControlledGainStd: z.number().nullable().default(null),
  /**
   * The independent reward model's gain (the report's independent.gain_std, in its own active std) at least this.
   * Applies only when the eval has one (independentRewardVersion). Default 0: naming an independent RM asks it to
   * agree that the candidate is no worse; null: measured and shown, not applied.
   */
  minIndependentGainStd: z.number().nullable().default(0),
});
export type EvalGate = z.infer<typeof evalGateSchema>;

/**
 * Data of a job on the `eval` queue: a published candidate policy against the active one (the KV's, or
 * `activeVersion`) on held-out prompts. With `promote`, a candidate that passes the gate becomes active (one KV
 * write); either way the verdict is recorded with the run.
 */
export const evalJobDataSchema = z.strictObject({
  candidateVersion: z.string().min(1),
  /** Default: the active policy version in the `models` KV. */
  activeVersion: z.string().nullable().default(null),
  /** The original base the drift bound measures against. Default: the trainer's FLYWHEEL_POLICY_VERSION. */
  baseVersion: z.string().nullable().default(null),
  rewardVersion: z.string().nullable().default(null),
  /**
   * A reward model version (role `reward`, in the checkpoint store) the candidate was not trained against, e.g. one
   * trained only on the held-out side of the approved pairs: the trainer scores the same samples with it in-process,
   * and the gate's minIndependentGainStd reads its gain. null: no independent evidence.
   */
  independentRewardVersion: z.string().nullable().default(null),
  prompts: z.array(chatPromptSchema).min(1).max(10_000),
  /**
   * Responses per prompt and model. 16: with the loop's ~12 held-out prompts that is ~190 samples a side, so one
   * flagged output moves the flag rate by 0.005, under the gate's 0.01 (at 4, one flag refused a candidate), and the
   * reward means are known to ~0.1 std; it costs ~5 s on 2 cores.
   */
  samples: z.int().positive().max(64).default(EVAL_SAMPLES),
  maxNewTokens: z.int().positive().max(4096).default(48),
  stop: z.array(z.string().min(1).max(64)).max(8).default([]),
  seed: z.int().nonnegative().default(1),
  gate: evalGateSchema.prefault({}),
  promote: z.boolean().default(false),
  /**
   * Pairs (the candidate's and the active version's first sample of a prompt, same seed) queued for blind A/B review
   * in the admin UI when the candidate passes the gate, one per prompt up to this many; 0: none.
   */
  abSamples: z.int().nonnegative().max(1_000).default(EVAL_AB_SAMPLES),
  /** With `promote`: wait for the A/B verdicts instead of promoting (abWaitSchema); null: promote on the gate alone. */
  abWait: abWaitSchema.nullable().default(null),
  parentRunId: z.string().nullable().default(null),
});
export type EvalJobData = z.infer<typeof evalJobDataSchema>;
export type EvalJobDataInput = z.input<typeof evalJobDataSchema>;

export const evalReportSchema = z.strictObject({
  prompts: z.int(),
  samples: z.int(),
  reward_before: z.number(),
  reward_std_before: z.number(),
  reward_after: z.number(),
  reward_std_after: z.number(),
  reward_gain_std: z.number(),
  /** The gain with response length regressed out (pooled OLS of reward on length and a candidate indicator). */
  reward_gain_std_length_controlled: z.number(),
  /** Best-of-n of the active version's own samples: its gain (same std units) at KL ≤ kl_bound. null: one sample. */
  best_of_n: z.object({ n: z.int(), kl_bound: z.number(), gain_std: z.number() }).nullable(),
  /** The independent reward model's scores of the same samples (independentRewardVersion); null: none. */
  independent: z
    .object({ reward_before: z.number(), reward_std_before: z.number(), reward_after: z.number(), gain_std: z.number(), gain_std_length_controlled: z.number() })
    .nullable()
    .default(null),
  kl: z.number(),
  kl_base: z.number().nullable(),
  flag_rate_before: z.number().nullable(),
  flag_rate_after: z.number().nullable(),
  response_length_before: z.number(),
  response_length_after: z.number(),
  /** The first sample of each prompt from both versions (the same seed), for people to read and the A/B queue. */
  examples: z.array(z.object({ prompt: z.string(), response: z.string(), reward: z.number(), active_response: z.string(), active_reward: z.number() })),
});
export type EvalReport = z.infer<typeof evalReportSchema>;

export const evalJobResultSchema = z.strictObject({
  trainingRunId: z.string(),
  candidateVersion: z.string(),
  activeVersion: z.string(),
  report: evalReportSchema,
  pass: z.boolean(),
  reasons: z.array(z.string()),
  promoted: z.boolean(),
  /** Pairs queued for blind A/B review. */
  abPairs: z.int().nonnegative().default(0),
  /** The candidate passed but its promotion waits for the A/B verdicts (abWait). */
  awaitingAb: z.boolean().default(false),
});
export type EvalJobResult = z.infer<typeof evalJobResultSchema>;

/** How long an `external` loop stage waits for its checkpoint by default (FLYWHEEL_LOOP_EXTERNAL_WAIT_MS). */
export const EXTERNAL_WAIT_MS = 7 * 86_400_000;

/**
 * The version name `flywheel models publish --run <loop run id>` gives a cluster-trained checkpoint when no --version
 * is named. The loop's `external` stage takes any policy version published with that run id, whatever its name.
 */
export const externalCandidateVersion = (loopRunId: string): string => `${loopRunId}-external`;

// ---- loop (one tracked reward-train → ppo → eval → promotion pass; apps/trainer/src/loop.processor.ts) --------

/** A loop run's policy optimiser: PPO, a critic-free group method, or a trainer elsewhere (the `external` hand-off). */
export const LOOP_ALGORITHMS = ['ppo', ...GRPO_ALGORITHMS, 'external'] as const;
export type LoopAlgorithm = (typeof LOOP_ALGORITHMS)[number];

/**
 * Data of a job on the `loop` queue. `data` holds the preference pairs the reward model trains on; PPO's prompts
 * are the same lines' prompts (a seeded share held out for eval). The policy starts from the active version (or
 * the configured base, published and made active first when nothing is).
 */
export const loopJobDataSchema = z.strictObject({
  data: trainingDataSourceSchema,
  trigger: z.enum(['manual', 'threshold', 'schedule']).default('manual'),
  /**
   * An SFT warm start on an `sft` export (approved answers and corrections) before the policy stage, which then starts
   * from, and keeps its KL to, the fine-tuned model; null: none.
   */
  sft: z
    .strictObject({
      data: trainingDataSourceSchema,
      steps: z.int().positive().max(1_000_000).default(30),
      lr: z.number().positive().max(1).default(1e-3),
      batchSize: z.int().positive().max(1024).default(8),
      heldout: z.number().min(0).max(0.5).default(0.1),
      seed: z.int().nonnegative().default(0),
    })
    .nullable()
    .default(null),
  /** A moderation-train stage first, on this `moderation` export (the reviewers' labels); null: none. */
  moderation: z
    .strictObject({ data: trainingDataSourceSchema, promote: z.enum(['if-better', 'never']).default('if-better') })
    .nullable()
    .default(null),
  rewardTrain: z
    .strictObject({
      steps: z.int().positive().max(1_000_000).default(60),
      lr: z.number().positive().max(1).default(3e-3),
      batchSize: z.int().positive().max(1024).default(8),
      heldout: z.number().min(0).max(0.5).default(0.2),
      seed: z.int().nonnegative().default(0),
    })
    .default({ steps: 60, lr: 3e-3, batchSize: 8, heldout: 0.2, seed: 0 }),
  /** A reward model below this held-out pairwise accuracy stops the run before PPO. */
  minRewardAccuracy: z.number().min(0).max(1).default(0.7),
  /**
   * An independent reward model for the eval gate: the pairs are split by prompt (a hash, the same every run), the
   * training reward model learns from the rest and a second one (same rewardTrain settings) from this `share` of
   * prompts only; the eval scores the candidate with the second one too (independentRewardVersion, bounded by the
   * gate's minIndependentGainStd). Skipped for a run whose second model stays below minRewardAccuracy. null: one
   * reward model on every pair, as before (FLYWHEEL_LOOP_INDEPENDENT_RM=on sets it for runs the loop starts).
   */
  independentRm: z
    .strictObject({ share: z.number().min(0.1).max(0.5).default(0.3) })
    .nullable()
    .default(null),
  /**
   * The policy optimiser: PPO with a critic initialised from the reward model, a critic-free group method, or
   * `external`: a trainer elsewhere (TRL, OpenRLHF on a cluster) fed from a hand-off folder, whose checkpoint comes
   * back through `flywheel models publish --run <loop run id>` (apps/trainer/src/external.stage.ts).
   */
  algorithm: z.enum(LOOP_ALGORITHMS).default('ppo'),
  /** The `external` stage's wait for the published checkpoint: the run fails once waitMs pass after its hand-off. */
  external: z
    .strictObject({
      /** Default 7 days: a cluster queue and a training run take hours to days. */
      waitMs: z.int().positive().max(365 * 86_400_000).default(EXTERNAL_WAIT_MS),
      /** How often the checkpoint store is looked at. */
      pollMs: z.int().min(100).max(3_600_000).default(5_000),
    })
    .default({ waitMs: EXTERNAL_WAIT_MS, pollMs: 5_000 }),
  ppo: ppoConfigSchema.partial().default({}),
  /** The group methods' settings (their `algorithm` is the run's). */
  grpo: grpoConfigSchema.omit({ algorithm: true }).partial().default({}),
  /** How the policy stage's rewards are made (the new reward model and verifiable functions by weight); default: the reward model alone. */
  rewards: rewardSpecSchema.optional(),
  /** Share of prompts held out of PPO for the eval stage. */
  heldout: z.number().min(0).max(0.5).default(0.2),
  eval: z
    .strictObject({
      /** Responses per held-out prompt and model (see evalJobDataSchema). */
      samples: z.int().positive().max(64).default(EVAL_SAMPLES),
      gate: evalGateSchema.prefault({}),
      promote: z.boolean().default(true),
      /** Pairs queued for blind A/B review when the candidate passes (see evalJobDataSchema). */
      abSamples: z.int().nonnegative().max(1_000).default(EVAL_AB_SAMPLES),
      /** Promotion waits for the reviewers' A/B verdicts (see abWaitSchema); null: it does not. */
      abWait: abWaitSchema.nullable().default(null),
    })
    .default({
      samples: EVAL_SAMPLES,
      gate: evalGateSchema.parse({}),
      promote: true,
      abSamples: EVAL_AB_SAMPLES,
      abWait: null,
    }),
});
export type LoopJobData = z.infer<typeof loopJobDataSchema>;
export type LoopJobDataInput = z.input<typeof loopJobDataSchema>;

export const loopJobResultSchema = z.strictObject({
  loopRunId: z.string(),
  rewardVersion: z.string(),
  rewardAccuracy: z.number().nullable(),
  candidateVersion: z.string().nullable(),
  baseVersion: z.string(),
  eval: evalJobResultSchema.nullable(),
  promoted: z.boolean(),
  /** Why the run stopped early (reward model too weak), when it did. */
  stoppedBecause: z.string().nullable(),
});
export type LoopJobResult = z.infer<typeof loopJobResultSchema>;

/**
 * `trainer.loop` start with explicit data (CLI, demo): one loop run on these pairs now, with overrides of the loop
 * defaults; the plain `{action: 'start'}` (admin UI) exports the store's approved preference pairs instead.
 */
const overridable = loopJobDataSchema.omit({ data: true, trigger: true }).shape;
type Overridable = typeof overridable;
/**
 * A start's overrides name only what they change: each field of the loop's job data, optional and without its default.
 * (`.partial()` keeps the defaults, which would then overwrite the trainer's configured algorithm and switches.)
 */
const loopOverridesSchema = z.strictObject(
  Object.fromEntries(Object.entries(overridable).map(([key, field]) => [key, (field instanceof z.ZodDefault ? field.unwrap() : field).optional()])) as unknown as {
    [K in keyof Overridable]: z.ZodOptional<z.ZodType<z.output<Overridable[K]>, z.input<Overridable[K]>>>;
  },
);

export const loopStartRequestSchema = z.strictObject({
  action: z.literal('start'),
  data: trainingDataSourceSchema,
  overrides: loopOverridesSchema.default({}),
});
export type LoopStartRequest = z.input<typeof loopStartRequestSchema>;
