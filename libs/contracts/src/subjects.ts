/**
 * Names that travel on the wire: NATS subjects, queue groups, JetStream streams, KV buckets,
 * object stores and BullMQ queues. One place so a rename is one edit; no payload shapes here.
 */

/** The five services of the mesh; each process is one of these. */
export const SERVICE_NAMES = ['gateway', 'policy', 'reward', 'moderation', 'trainer'] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

/** Request/reply and streaming subjects. Every service answers `mesh.ping.<service>` in its queue group. */
export const SUBJECTS = {
  ping: (service: ServiceName) => `mesh.ping.${service}` as const,
  policy: {
    generate: 'policy.generate',
    cancel: 'policy.cancel',
    info: 'policy.info',
    tokenize: 'policy.tokenize',
    detokenize: 'policy.detokenize',
  },
  reward: { score: 'reward.score', info: 'reward.info' },
  moderation: { check: 'moderation.check', info: 'moderation.info' },
  /**
   * loop: control and status of the background RL loop (training-runs.schemas.ts); moderation: start a
   * moderation-train job on the reviewers' data (moderation-labels.schemas.ts).
   */
  trainer: { info: 'trainer.info', loop: 'trainer.loop', moderation: 'trainer.moderation' },
} as const;

/** Queue groups: replicas of one service share load by subscribing in the same group. */
export const queueGroupOf = (service: ServiceName): string => `flywheel.${service}`;

/** JetStream streams that carry durable records (acknowledged before an API answers). */
export const STREAMS = {
  completions: { name: 'COMPLETIONS', subjects: ['flywheel.completions.>'] },
  feedback: { name: 'FEEDBACK', subjects: ['flywheel.feedback.>'] },
} as const;

/** KV bucket of active model versions per role, and the object store for checkpoints. */
export const KV_BUCKETS = { models: 'models' } as const;
export const OBJECT_STORES = { checkpoints: 'checkpoints' } as const;

/** BullMQ queues run by the trainer. */
export const QUEUES = {
  sft: 'sft',
  rewardTrain: 'reward-train',
  ppo: 'ppo',
  dpo: 'dpo',
  /** Offline optimization on unpaired thumbs and ratings: KTO (trainer.schemas.ts). */
  kto: 'kto',
  eval: 'eval',
  /** One pass of the RL loop; it enqueues its reward-train, ppo and eval stages and waits for each. */
  loop: 'loop',
  /** Critic-free policy optimisation: GRPO, RLOO or REINFORCE++ (grpo.schemas.ts). */
  grpo: 'grpo',
  /** Retrains the moderation classifier on the seed set plus reviewers' labels (moderation-labels.schemas.ts). */
  moderationTrain: 'moderation-train',
} as const;
export type QueueName = (typeof QUEUES)[keyof typeof QUEUES];
