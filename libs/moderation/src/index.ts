/**
 * libs/moderation: the in-process moderation engine shared by the moderation service and the gateway:
 * canonicalisation, lexicon rules, PII detectors, the hashed n-gram classifier, the policy, the
 * Moderator that layers them, and the StreamModerator for generated text. Wire shapes are in contracts.
 */
export * from './text.normalize';
export * from './pii.detectors';
export * from './lexicon.rules';
export * from './ngram.features';
export * from './linear.classifier';
export * from './moderation.policy';
export * from './moderator';
export * from './stream.moderator';
export * from './moderation.loader';
export * from './moderator.config';
export * from './seed.dataset';
export * from './classifier.training';
export * from './served-moderator';
export * from './moderation.gate';
