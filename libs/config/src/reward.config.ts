/**
 * The reward service's own settings on top of the common tree: which reward checkpoint to serve while the `models`
 * KV names no reward version (none by default: reward.score then answers `unavailable` while the service stays
 * healthy), its version name and native threads, and the folder user reward modules load from. A pure parse of the
 * environment.
 */
import { z } from 'zod';
import { parseEnv, type Env } from './config.loader';
import { intVar, optionalStringVar, stringVar } from './env.fields';
import { loadServiceConfig, type CommonConfig } from './service.config';

export interface RewardConfig extends CommonConfig {
  reward: {
    /** A LlamaForSequenceClassification HF directory (num_labels 1); null = no reward model configured. */
    model: string | null;
    version: string;
    /** 0 = one per hardware core. */
    threads: number;
    /** Where `module` reward functions are loaded from (their paths are relative to it); null: modules refused. */
    functionsDir: string | null;
  };
}

export const rewardEnvSchema = z.object({
  FLYWHEEL_REWARD_MODEL: optionalStringVar(),
  FLYWHEEL_REWARD_VERSION: stringVar('rm-base'),
  FLYWHEEL_REWARD_THREADS: intVar(0, 0, 1024),
  FLYWHEEL_REWARD_FUNCTIONS_DIR: optionalStringVar(),
});

export function loadRewardConfig(env: Env): RewardConfig {
  const r = parseEnv(rewardEnvSchema, env);
  const model = r.FLYWHEEL_REWARD_MODEL?.trim();
  return {
    ...loadServiceConfig('reward', env),
    reward: { model: model ? model : null, version: r.FLYWHEEL_REWARD_VERSION, threads: r.FLYWHEEL_REWARD_THREADS, functionsDir: r.FLYWHEEL_REWARD_FUNCTIONS_DIR?.trim() || null },
  };
}

export const REWARD_ENV_DOCS: ReadonlyArray<{ name: string; default: string; meaning: string }> = [
  { name: 'FLYWHEEL_REWARD_MODEL', default: '(unset: no reward model)', meaning: 'reward model served until the models KV names a reward version: a LlamaForSequenceClassification or Qwen2ForSequenceClassification HF directory (num_labels 1); unset and none active, reward.score answers unavailable' },
  { name: 'FLYWHEEL_REWARD_VERSION', default: 'rm-base', meaning: 'version reported with the scores of FLYWHEEL_REWARD_MODEL (a promoted version reports its own name)' },
  { name: 'FLYWHEEL_REWARD_THREADS', default: '0 (one per core)', meaning: 'native thread count of the reward model' },
  { name: 'FLYWHEEL_REWARD_FUNCTIONS_DIR', default: '(unset: modules refused)', meaning: 'folder that `module` reward functions are loaded from (their paths are relative to it and may not leave it)' },
];
