/**
 * The trainer's own settings on top of the common tree: the BullMQ key prefix of its queues (so tests and
 * several deployments can share one Redis), the job lock that decides how soon a killed trainer's job is
 * picked up again, and the native thread count of training. A pure parse of the environment.
 */
import { z } from 'zod';
import { parseEnv, type Env } from './config.loader';
import { intVar, stringVar } from './env.fields';
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
}

export const trainerEnvSchema = z.object({
  FLYWHEEL_QUEUE_PREFIX: stringVar('bull').pipe(z.string().regex(/^[A-Za-z0-9:_-]+$/, 'letters, digits, :, _ or -')),
  FLYWHEEL_TRAINER_LOCK_MS: intVar(30_000, 1_000, 3_600_000),
  FLYWHEEL_TRAINER_THREADS: intVar(0, 0, 1024),
});

export function loadTrainerConfig(env: Env): TrainerConfig {
  const t = parseEnv(trainerEnvSchema, env);
  return {
    ...loadServiceConfig('trainer', env),
    trainer: { queuePrefix: t.FLYWHEEL_QUEUE_PREFIX, lockMs: t.FLYWHEEL_TRAINER_LOCK_MS, threads: t.FLYWHEEL_TRAINER_THREADS },
  };
}
