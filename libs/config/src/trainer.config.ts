/**
 * The trainer's own settings on top of the common tree: the BullMQ key prefix of its queues (so tests and
 * several deployments can share one Redis), the job lock that decides how soon a killed trainer's job is
 * picked up again, the native thread count of training, the RL loop's triggers and base policy, and the moderation files
 * (the moderation-train job judges candidates under them). A pure parse
 * of the environment.
 */
import { z } from 'zod';
import { LOOP_ALGORITHMS, type LoopAlgorithm } from '@flywheel/contracts';
import { parseEnv, type Env } from './config.loader';
import { enumVar, intVar, stringVar } from './env.fields';
import { loadModerationConfig, type ModerationConfig } from './moderation.config';
import { loadServiceConfig, type CommonConfig } from './service.config';

export interface TrainerConfig extends CommonConfig {
  trainer: {
    /** BullMQ `prefix` of every trainer queue's Redis keys. */
    queuePrefix: string;
    /** BullMQ lockDuration and stalled-check interval: a job whose worker died runs again after about this long. */
    lockMs: number;
    /** Native training threads; 0 = one per hardware core. */
    threads: number;
  };
  /** The self-running RL loop (reward-train → ppo → eval → promotion). */
  loop: {
    /** Start a loop run when this many approved preference pairs arrived since the last one; 0: never by count. */
    minNewApproved: number;
    /** Also start one this often (ms) when any new approved pair exists; 0: no schedule. */
    scheduleMs: number;
    /** How often the trigger is checked. */
    checkMs: number;
    /** Policy to start from while no version is active in the KV (the policy service's FLYWHEEL_MODEL). */
    baseModel: string;
    /** The version name that base is published under (the policy service's FLYWHEEL_POLICY_VERSION). */
    baseVersion: string;
    /** auto: a run starts with a moderation-train stage when reviewers' moderation data exists; off: never. */
    moderation: 'auto' | 'off';
    /** auto: a run fine-tunes the policy on approved answers and corrections (an `sft` export) before its policy stage. */
    sft: 'auto' | 'off';
    /** The policy optimiser of a loop run: PPO, a critic-free group method, or `external` (a hand-off to a cluster trainer). */
    algorithm: LoopAlgorithm;
    /** How long an `external` stage waits for the checkpoint published under its run id before the run fails. */
    externalWaitMs: number;
    /**
     * on: a run splits the pairs by prompt, trains its reward model on one side and an independent one on the other,
     * and the eval gate scores the candidate with both (loopJobDataSchema.independentRm).
     */
    independentRm: 'on' | 'off';
  };
  /** The moderation service's lexicon, policy and model files: moderation-train judges candidates under them. */
  moderation: ModerationConfig;
}

export const trainerEnvSchema = z.object({
  FLYWHEEL_QUEUE_PREFIX: stringVar('bull').pipe(z.string().regex(/^[A-Za-z0-9:_-]+$/, 'letters, digits, :, _ or -')),
  FLYWHEEL_TRAINER_LOCK_MS: intVar(30_000, 1_000, 3_600_000),
  FLYWHEEL_TRAINER_THREADS: intVar(0, 0, 1024),
  FLYWHEEL_LOOP_MIN_NEW_APPROVED: intVar(100, 0, 1_000_000_000),
  FLYWHEEL_LOOP_SCHEDULE_MS: intVar(0, 0, 365 * 86_400_000),
  FLYWHEEL_LOOP_CHECK_MS: intVar(30_000, 1_000, 86_400_000),
  FLYWHEEL_LOOP_MODERATION: enumVar(['auto', 'off'] as const, 'auto'),
  FLYWHEEL_LOOP_SFT: enumVar(['auto', 'off'] as const, 'off'),
  FLYWHEEL_LOOP_ALGORITHM: enumVar(LOOP_ALGORITHMS, 'ppo'),
  FLYWHEEL_LOOP_EXTERNAL_WAIT_MS: intVar(7 * 86_400_000, 60_000, 365 * 86_400_000),
  FLYWHEEL_LOOP_INDEPENDENT_RM: enumVar(['on', 'off'] as const, 'off'),
  FLYWHEEL_MODEL: stringVar('models/stories260K'),
  FLYWHEEL_POLICY_VERSION: stringVar('base').pipe(z.string().regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/, 'letters, digits, ., _ or -')),
});

export function loadTrainerConfig(env: Env): TrainerConfig {
  const t = parseEnv(trainerEnvSchema, env);
  return {
    ...loadServiceConfig('trainer', env),
    trainer: { queuePrefix: t.FLYWHEEL_QUEUE_PREFIX, lockMs: t.FLYWHEEL_TRAINER_LOCK_MS, threads: t.FLYWHEEL_TRAINER_THREADS },
    loop: {
      minNewApproved: t.FLYWHEEL_LOOP_MIN_NEW_APPROVED,
      scheduleMs: t.FLYWHEEL_LOOP_SCHEDULE_MS,
      checkMs: t.FLYWHEEL_LOOP_CHECK_MS,
      baseModel: t.FLYWHEEL_MODEL,
      baseVersion: t.FLYWHEEL_POLICY_VERSION,
      moderation: t.FLYWHEEL_LOOP_MODERATION,
      algorithm: t.FLYWHEEL_LOOP_ALGORITHM,
      externalWaitMs: t.FLYWHEEL_LOOP_EXTERNAL_WAIT_MS,
      sft: t.FLYWHEEL_LOOP_SFT,
      independentRm: t.FLYWHEEL_LOOP_INDEPENDENT_RM,
    },
    moderation: loadModerationConfig(env),
  };
}
