/**
 * libs/store: persistence of completions, feedback, reviews, exports, training runs and model versions
 * on Postgres (a server, or the embedded one the launcher runs), with migrations applied at open. Import from '@flywheel/store' only;
 * helpers for tests (throwaway databases, valid records) are '@flywheel/store/testing', kept out of this barrel.
 * No NATS and no HTTP here: the gateway's store writer and APIs call these functions.
 */
export * from './store.tables';
export * from './store.migrations';
export * from './embedded-postgres';
export * from './store.open';
export * from './record.writes';
export * from './feedback.reads';
export * from './inbox.queries';
export * from './review.writes';
export * from './export.lines';
export * from './export.queries';
export * from './export.prompts';
export * from './moderation-labels';
export * from './stats.queries';
export * from './krippendorff-alpha';
export * from './agreement.queries';
export * from './model-versions.writes';
export * from './model-versions.lineage';
export * from './training-runs.queries';
export * from './training-runs.writes';
export * from './ab-reviews.writes';
export * from './ab-reviews.queries';
