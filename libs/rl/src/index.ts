/**
 * @flywheel/rl: reinforcement learning from feedback on the native training path — the advantage and loss math
 * (GAE, whitening, clipped PPO losses, group-relative advantages, KL estimators and controllers, DPO, KTO), the PPO
 * trainer (rollouts, scoring, updates, resumable state), the critic-free GRPO / RLOO / REINFORCE++ trainer and the DPO and KTO trainers. Not the BullMQ jobs (apps/trainer) nor the kernels (libs/kernels).
 */
export * from './ppo.math';
export * from './rollout';
export * from './ppo.trainer';
export * from './group.math';
export * from './grpo.trainer';
export * from './reward-functions';
export * from './reward-module.runner';
export * from './prompts';
export * from './dpo.loss';
export * from './dpo.trainer';
export * from './kto.loss';
export * from './kto.trainer';
export * from './policy.eval';
