/**
 * The moderation policy: for each of the 15 categories and each direction (input = a user's prompt,
 * output = generated text) an action (`block`, `flag`, `allow`) and the score threshold at which it
 * applies, plus extra lexicon rules a deployment adds (a house blocklist). Parsing and the decision
 * only; the default policy is data/policy.default.json. A threshold is compared with the category's
 * layered score, in which the classifier is relative to its own per-head threshold (0.5 = exactly the
 * model's calibrated cut, see Moderator.analyze) and a rule or PII hit is its own score.
 */
import { z } from 'zod';
import {
  ALL_MODERATION_CATEGORIES,
  MODERATION_ACTIONS,
  MODERATION_DIRECTIONS,
  type AnyModerationCategory,
  type ModerationAction,
  type ModerationDirection,
} from '@flywheel/contracts';
import { lexiconRuleSchema, type LexiconRule } from './lexicon.rules';

const ruleSchema = z.object({ action: z.enum(MODERATION_ACTIONS), threshold: z.number().min(0).max(1) }).strict();
export type PolicyRule = z.infer<typeof ruleSchema>;

const directionsSchema = z
  .object({ input: ruleSchema.partial().optional(), output: ruleSchema.partial().optional() })
  .strict();

export const policyFileSchema = z
  .object({
    name: z.string().min(1),
    defaults: z.object({ input: ruleSchema, output: ruleSchema }).strict(),
    categories: z.partialRecord(z.enum(ALL_MODERATION_CATEGORIES), directionsSchema).default({}),
    /** Extra lexicon rules (same shape as lexicon.json's), merged into the lexicon at load. */
    rules: z.array(lexiconRuleSchema).default([]),
  })
  .strict();
export type PolicyFile = z.input<typeof policyFileSchema>;

export interface ResolvedPolicy {
  name: string;
  rules: LexiconRule[];
  table: Record<AnyModerationCategory, Record<ModerationDirection, PolicyRule>>;
}

export function resolvePolicy(raw: unknown): ResolvedPolicy {
  const file = policyFileSchema.parse(raw);
  const table = {} as ResolvedPolicy['table'];
  for (const c of ALL_MODERATION_CATEGORIES) {
    const entry = file.categories[c];
    table[c] = {
      input: { ...file.defaults.input, ...entry?.input },
      output: { ...file.defaults.output, ...entry?.output },
    };
  }
  return { name: file.name, rules: file.rules, table };
}

export interface PolicyDecision {
  action: ModerationAction;
  /** Categories whose score reached their threshold under a `block` rule, and under a `flag` rule. */
  blocked: AnyModerationCategory[];
  flagged: AnyModerationCategory[];
}

export function decide(
  policy: ResolvedPolicy,
  direction: ModerationDirection,
  scores: Readonly<Record<AnyModerationCategory, number>>,
): PolicyDecision {
  const blocked: AnyModerationCategory[] = [];
  const flagged: AnyModerationCategory[] = [];
  for (const c of ALL_MODERATION_CATEGORIES) {
    const rule = policy.table[c][direction];
    if (rule.action === 'allow' || scores[c] < rule.threshold) continue;
    (rule.action === 'block' ? blocked : flagged).push(c);
  }
  return { action: blocked.length > 0 ? 'block' : flagged.length > 0 ? 'flag' : 'allow', blocked, flagged };
}

/** Whether one category at this score would be blocked: the streaming checker's cut test for a match. */
export function blocks(policy: ResolvedPolicy, direction: ModerationDirection, category: AnyModerationCategory, score: number): boolean {
  const rule = policy.table[category][direction];
  return rule.action === 'block' && score >= rule.threshold;
}
