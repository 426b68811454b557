/** Training loops over the native kernels (SFT today); the kernels themselves live in @flywheel/kernels. */
export * from './sft.trainer';
export * from './reward.scoring';
export * from './reward.trainer';
export * from './peft-adapter.io';
