/**
 * Model versions on the mesh: the entry of the `models` KV bucket that names a role's active version (one
 * write promotes or rolls back), and the record published with each checkpoint in the `checkpoints` object
 * store. Not the database rows (libs/store) and not the packing of files (libs/mesh/src/checkpoint-store.ts).
 */
import { z } from 'zod';
import { moderationHeldoutSchema } from './moderation-labels.schemas';

export const MODEL_ROLES = ['policy', 'reward', 'moderation'] as const;
export const modelRoleSchema = z.enum(MODEL_ROLES);
export type ModelRole = z.infer<typeof modelRoleSchema>;

/** Version names become object names and Prometheus label values: keep them plain. */
export const modelVersionNameSchema = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'a version is letters, digits, ".", "_" or "-"');

export const checkpointRefSchema = z.object({
  /** Object name in the `checkpoints` object store. */
  object: z.string().min(1),
  /** Hex sha256 of the packed object. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().nonnegative(),
});
export type CheckpointRef = z.infer<typeof checkpointRefSchema>;

/** What `models publish` records beside the checkpoint (the object's description, as JSON). */
export const publishedModelSchema = z.object({
  version: modelVersionNameSchema,
  role: modelRoleSchema,
  checkpoint: checkpointRefSchema,
  parent: z.string().nullable(),
  runId: z.string().nullable(),
  exports: z.array(z.string()),
  files: z.array(z.object({ name: z.string(), bytes: z.number().int().nonnegative() })),
  publishedAt: z.string(),
});
export type PublishedModel = z.infer<typeof publishedModelSchema>;

/** The value under key `<role>` of the `models` KV bucket. */
export const activeModelEntrySchema = z.object({
  version: modelVersionNameSchema,
  checkpoint: checkpointRefSchema,
  parent: z.string().nullable(),
  runId: z.string().nullable(),
  exports: z.array(z.string()),
  promotedAt: z.string(),
  promotedBy: z.string(),
  reason: z.string(),
  /** A rollback entry undoes the promotion before it (so a second rollback goes one further back). */
  action: z.enum(['promote', 'rollback']).default('promote'),
});
export type ActiveModelEntry = z.infer<typeof activeModelEntrySchema>;

/** What the eval gate found when it judged a version (kept on its model_versions row as `metrics.eval`). */
export const versionGateSchema = z.object({
  run: z.string(),
  active: z.string(),
  base: z.string().nullable().optional(),
  kl: z.number().nullable(),
  kl_base: z.number().nullable().optional(),
  reward_gain_std: z.number().nullable(),
  reward_gain_std_length_controlled: z.number().nullable().optional(),
  best_of_n: z.object({ n: z.int(), kl_bound: z.number(), gain_std: z.number() }).nullable().optional(),
  /** The gain measured by a reward model the candidate was not trained against (its version), plain and at equal length. */
  independent: z.object({ version: z.string(), gain_std: z.number(), gain_std_length_controlled: z.number() }).nullable().optional(),
  pass: z.boolean(),
  reasons: z.array(z.string()),
  /** Pairs queued for blind A/B review, and whether promotion waits for their verdicts (and how many). */
  ab: z.object({ pairs: z.int(), wait: z.boolean(), min_verdicts: z.int() }).optional(),
});
export type VersionGate = z.infer<typeof versionGateSchema>;

/** What moderation-train found when it judged a moderation version (its row's `metrics.eval`). */
export const moderationGateSchema = z.object({
  candidate: moderationHeldoutSchema,
  active: moderationHeldoutSchema,
  pass: z.boolean(),
  promoted: z.boolean(),
  reasons: z.array(z.string()),
});
export type ModerationGate = z.infer<typeof moderationGateSchema>;

/** `flywheel models list` and `GET /admin/api/models`: the role's published versions and which is active. */
export const modelVersionListSchema = z.object({
  role: modelRoleSchema,
  active: z.string().nullable(),
  /** What a rollback would restore; null when nothing is left to roll back to. */
  previous: z.string().nullable(),
  activeEntry: activeModelEntrySchema.nullable(),
  versions: z.array(
    z.object({
      version: z.string(),
      parent: z.string().nullable(),
      runId: z.string().nullable(),
      exports: z.array(z.string()),
      bytes: z.number().int().nonnegative(),
      sha256: z.string(),
      publishedAt: z.string(),
      state: z.enum(['active', 'previous', 'candidate']),
      /** The eval gate's evidence for this version (admin API, from the store); absent when never evaluated. */
      gate: versionGateSchema.optional(),
      /** A moderation version's held-out comparison with the version it was judged against (admin API, from the store). */
      moderation_gate: moderationGateSchema.optional(),
    }),
  ),
});
export type ModelVersionList = z.infer<typeof modelVersionListSchema>;

export const modelPromoteBodySchema = z
  .object({ version: z.string().min(1), role: modelRoleSchema.default('policy'), reason: z.string().max(500).optional() })
  .strict();
export const modelRollbackBodySchema = z.object({ role: modelRoleSchema.default('policy'), reason: z.string().max(500).optional() }).strict();
