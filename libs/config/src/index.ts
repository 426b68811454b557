/**
 * libs/config: each service's environment parsed once at boot into a typed tree.
 * Import from '@flywheel/config'; the parse is pure (takes an env object) so it is testable.
 */
export * from './config.loader';
export * from './env.fields';
export * from './service.config';
export * from './policy.config';
export * from './gateway-api.config';
export * from './moderation.config';
export * from './store.config';
export * from './admin.config';
export * from './trainer.config';
export * from './reward.config';
