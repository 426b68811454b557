/** Frozen scoring on the native forward: reward-model inputs, batches and the scorer the reward service serves. */
export * from './reward.scoring';
