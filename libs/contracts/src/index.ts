/**
 * libs/contracts: every wire shape of Flywheel as a zod schema plus its inferred type, and every
 * subject/stream/queue name. Import from '@flywheel/contracts' only; nothing here does I/O.
 */
export * from './version';
export * from './subjects';
export * from './mesh.schemas';
export * from './trainer.schemas';
export * from './policy.schemas';
export * from './moderation.schemas';
export * from './moderation-labels.schemas';
export * from './openai.schemas';
export * from './json-schema.support';
export * from './tool-call.formats';
export * from './responses.schemas';
export * from './completion-record.schemas';
export * from './feedback.schemas';
export * from './admin.schemas';
export * from './model-versions.schemas';
export * from './reward-functions.schemas';
export * from './reward.schemas';
export * from './training-runs.schemas';
export * from './rl-jobs.schemas';
export * from './grpo.schemas';
