/**
 * Verifiable rewards: reward functions the reward service evaluates beside (or instead of) its reward model and
 * combines with it by weights. Declarative checks (a regex, an exact or numeric match against a reference column of
 * the prompt set, JSON-schema validity, length bounds, the moderation verdict) and TypeScript/JavaScript modules for
 * anything else (loaded from a path the reward service can read, run with a time limit). Shapes only; evaluation is
 * libs/rl/src/reward-functions.ts and apps/reward.
 */
import { z } from 'zod';

const name = z
  .string()
  .regex(/^[a-z][a-z0-9_]{0,39}$/, 'a lower-case name: letters, digits, _ (it names the metric)')
  .refine((n) => n !== 'model', '`model` names the reward model\'s part');
const common = {
  name,
  /** The function's share of the combined reward. */
  weight: z.number().min(-100).max(100).default(1),
};
/** Where a function finds the answer in the response: the first capture group of this regex (default: the whole response). */
const extract = z
  .string()
  .max(500)
  .refine((p) => {
    try {
      new RegExp(p);
      return true;
    } catch {
      return false;
    }
  }, 'must be a valid JavaScript regular expression')
  .optional();

export const rewardFunctionSchema = z.discriminatedUnion('kind', [
  /** 1 when the response matches (`mode: match`), or the number of matches (`count`), else 0. */
  z.strictObject({
    ...common,
    kind: z.literal('regex'),
    pattern: z.string().min(1).max(500),
    flags: z.string().regex(/^[imsu]*$/, 'flags are some of i, m, s, u').default(''),
    mode: z.enum(['match', 'count']).default('match'),
  }),
  /** 1 when the (extracted) response equals the prompt's reference column, after trimming, case folding and collapsing spaces unless `normalize` is false. */
  z.strictObject({ ...common, kind: z.literal('exact'), reference: z.string().min(1).max(64), extract, normalize: z.boolean().default(true) }),
  /** 1 when the last number in the (extracted) response is within `tolerance` (absolute or relative) of the reference column. */
  z.strictObject({ ...common, kind: z.literal('numeric'), reference: z.string().min(1).max(64), extract, tolerance: z.number().min(0).default(1e-6) }),
  /** 1 when the (extracted) response parses as JSON valid against `schema` (Ajv, draft 2020-12), else 0. */
  z.strictObject({ ...common, kind: z.literal('json_schema'), schema: z.record(z.string(), z.unknown()), extract }),
  /** 1 inside [min, max] (characters or words), else 0. */
  z.strictObject({ ...common, kind: z.literal('length'), unit: z.enum(['chars', 'words']).default('chars'), min: z.int().nonnegative().optional(), max: z.int().nonnegative().optional() }),
  /** 1 when the moderation service lets the response through as output (no flag, no block), else 0. */
  z.strictObject({ ...common, kind: z.literal('moderation') }),
  /**
   * A module exporting `reward(ctx) → number | Promise<number>` (or the `export` named), ctx = {prompt, response,
   * reference}; run in a worker thread killed after `timeoutMs` (a timeout or a throw scores `onError`).
   */
  z.strictObject({
    ...common,
    kind: z.literal('module'),
    path: z.string().min(1).max(1000),
    export: z.string().regex(/^[A-Za-z_$][\w$]*$/).default('reward'),
    timeoutMs: z.int().min(10).max(60_000).default(2_000),
    onError: z.number().default(0),
  }),
]);
export type RewardFunction = z.infer<typeof rewardFunctionSchema>;
export type RewardFunctionInput = z.input<typeof rewardFunctionSchema>;

/**
 * How a reward is made: `model` × the reward model's score + Σ weight × function. `model: 0` needs no reward model
 * (a purely verifiable task); functions are named uniquely.
 */
export const rewardSpecSchema = z
  .strictObject({
    model: z.number().min(0).max(100).default(1),
    functions: z.array(rewardFunctionSchema).max(16).default([]),
  })
  .refine((s) => new Set(s.functions.map((f) => f.name)).size === s.functions.length, { message: 'names a function twice', path: ['functions'] })
  .refine((s) => s.model > 0 || s.functions.length > 0, { message: 'needs the reward model (model > 0) or at least one function', path: ['model'] });
export type RewardSpec = z.infer<typeof rewardSpecSchema>;
export type RewardSpecInput = z.input<typeof rewardSpecSchema>;

/** A prompt's reference columns (answers, expected values) that exact and numeric functions compare with. */
export const rewardReferenceSchema = z.record(z.string().max(64), z.union([z.string().max(65_536), z.number()]));
export type RewardReference = z.infer<typeof rewardReferenceSchema>;
