/**
 * The layered moderator: canonicalise once, then rules (lexicon terms/patterns), PII detectors and the
 * calibrated classifier each score the 15 categories; a category's score is the max of its layers and
 * of its subcategories (a threat is harassment too); the policy turns scores into block/flag/allow.
 * The classifier enters on the policy's scale, where its per-head threshold is 0.5 (see analyze).
 * Synchronous, in-process, no I/O: the service and the gateway share it (see moderation.loader.ts).
 */
import { randomUUID } from 'node:crypto';
import {
  ALL_MODERATION_CATEGORIES,
  MODERATION_CATEGORIES,
  type AnyModerationCategory,
  type FlywheelModerationResult,
  type ModerationCategory,
  type ModerationDirection,
  type ModerationResponse,
  type ModerationResult,
  type ParsedModerationRequest,
  type PiiEntity,
  type RuleMatch,
} from '@flywheel/contracts';
import { CompiledLexicon } from './lexicon.rules';
import { LinearClassifier, relativeToThreshold } from './linear.classifier';
import { decide, type PolicyDecision, type ResolvedPolicy } from './moderation.policy';
import { extractFeatures } from './ngram.features';
import { detectPii } from './pii.detectors';
import { canonicalize, type CanonicalText } from './text.normalize';

/** Subcategory → parent, as in OpenAI's taxonomy. */
export const PARENT_CATEGORY: Partial<Record<ModerationCategory, ModerationCategory>> = {
  'harassment/threatening': 'harassment',
  'hate/threatening': 'hate',
  'illicit/violent': 'illicit',
  'self-harm/intent': 'self-harm',
  'self-harm/instructions': 'self-harm',
  'sexual/minors': 'sexual',
  'violence/graphic': 'violence',
};

const PARENT_PAIRS = Object.entries(PARENT_CATEGORY) as Array<[ModerationCategory, ModerationCategory]>;

export type CategoryScores = Record<AnyModerationCategory, number>;

interface ClassifierPart {
  readonly scores: Readonly<CategoryScores>;
  readonly classifierScores: Readonly<Partial<CategoryScores>>;
}

export interface Analysis {
  /** What the policy compares with its thresholds: rules, PII and the classifier on the policy's scale. */
  scores: CategoryScores;
  /**
   * Classifier-only scores, calibrated probabilities (not moved onto the policy's scale), for evaluation
   * and the flywheel record; a head decides at `classifier.thresholds`.
   */
  classifierScores: Partial<CategoryScores>;
  matches: RuleMatch[];
  pii: PiiEntity[];
}

/** What the rules and PII detectors found in one text, before any scoring. */
export interface Findings {
  matches: RuleMatch[];
  pii: PiiEntity[];
}

export interface TextVerdict {
  result: ModerationResult;
  flywheel: FlywheelModerationResult;
  decision: PolicyDecision;
  analysis: Analysis;
}

export interface ModeratorParts {
  lexicon: CompiledLexicon;
  classifier: LinearClassifier;
  policy: ResolvedPolicy;
  /** Reported as `model` in responses. */
  modelId: string;
}

/** Every category at 0, copied per analysis (a spread of a fixed object is cheaper than building it: the stream check analyses every delta). */
const ZERO_SCORES = Object.freeze(Object.fromEntries(ALL_MODERATION_CATEGORIES.map((c) => [c, 0])) as CategoryScores);
const zeroScores = (): CategoryScores => ({ ...ZERO_SCORES });

const round = (x: number) => Math.round(x * 1e6) / 1e6;

export class Moderator {
  readonly lexicon: CompiledLexicon;
  readonly classifier: LinearClassifier;
  readonly policy: ResolvedPolicy;
  readonly modelId: string;
  private readonly headIndex: Array<[AnyModerationCategory, number]>;
  private readonly parts = new WeakMap<ArrayLike<number>, ClassifierPart>();

  constructor(parts: ModeratorParts) {
    this.lexicon = parts.lexicon;
    this.classifier = parts.classifier;
    this.policy = parts.policy;
    this.modelId = parts.modelId;
    const known = new Set<string>(ALL_MODERATION_CATEGORIES);
    this.headIndex = parts.classifier.heads.flatMap((h, i) => (known.has(h) ? [[h as AnyModerationCategory, i] as [AnyModerationCategory, number]] : []));
  }

  /**
   * Scores of every category for one text, with the rule matches and PII spans behind them. A caller that already
   * canonicalised the text (the stream checker, which also reads its tail) passes that in rather than paying twice,
   * and one that already has the classifier's answer for it (or for the text it extends) passes that too.
   *
   * The classifier's calibrated score enters `scores` moved so that its head's threshold (chosen on held-out
   * scores at training) lands on 0.5: a policy cut-off of 0.5 means "at the model's own threshold", 0.6 a little
   * stricter, 0.3 laxer, and one policy file keeps its meaning across retrained artifacts whose thresholds
   * differ. Rule and PII scores are not moved: they are the rule's own confidence.
   */
  analyze(text: string, canonical: CanonicalText = canonicalize(text), probs: ArrayLike<number> = this.classify(canonical)): Analysis {
    return this.scoreFindings(this.findings(text, canonical), probs);
  }

  /** The rule matches and PII spans of one text: analyze's first half, for a caller that may stop there. */
  findings(text: string, canonical: CanonicalText): Findings {
    return { matches: this.lexicon.match(canonical), pii: detectPii(text) };
  }

  /** analyze's second half: the scores of what was found, with the classifier's answer. */
  scoreFindings({ matches, pii }: Findings, probs: ArrayLike<number>): Analysis {
    const base = this.classifierPart(probs);
    const scores = { ...base.scores };
    for (const m of matches) scores[m.category] = Math.max(scores[m.category], m.score);
    if (pii.length > 0) scores.pii = 1;
    for (const [child, parent] of PARENT_PAIRS) scores[parent] = Math.max(scores[parent], scores[child]);
    return { scores, classifierScores: { ...base.classifierScores }, matches, pii };
  }

  /**
   * The classifier's share of an analysis for these probabilities, kept while the probabilities object lives: a
   * stream passes the same answer to every push between classifier runs (and many streams interleave), so the
   * scores it implies are made once per run.
   */
  private classifierPart(probs: ArrayLike<number>): ClassifierPart {
    const known = this.parts.get(probs);
    if (known) return known;
    const scores = zeroScores();
    const classifierScores: Partial<CategoryScores> = {};
    const { thresholds } = this.classifier;
    for (const [category, i] of this.headIndex) {
      classifierScores[category] = probs[i];
      scores[category] = relativeToThreshold(probs[i], thresholds[i]);
    }
    const part = { scores, classifierScores };
    this.parts.set(probs, part);
    return part;
  }

  /**
   * The classifier's probabilities per head for a canonical text: the costly half of `analyze`, which a stream runs
   * less often than the rules and passes back in (`probs`) between runs.
   */
  classify(canonical: CanonicalText): ArrayLike<number> {
    return this.classifier.predict(extractFeatures(canonical, this.classifier.meta.buckets));
  }

  check(text: string, direction: ModerationDirection): TextVerdict {
    const analysis = this.analyze(text);
    return this.verdict(analysis, direction);
  }

  /** Policy applied to an analysis (the stream checker re-uses analyses of its windows). */
  verdict(analysis: Analysis, direction: ModerationDirection): TextVerdict {
    const decision = decide(this.policy, direction, analysis.scores);
    const hit = new Set<AnyModerationCategory>([...decision.blocked, ...decision.flagged]);
    const categories = {} as Record<ModerationCategory, boolean>;
    const categoryScores = {} as Record<ModerationCategory, number>;
    for (const c of MODERATION_CATEGORIES) {
      categories[c] = hit.has(c);
      categoryScores[c] = round(analysis.scores[c]);
    }
    const result: ModerationResult = {
      flagged: MODERATION_CATEGORIES.some((c) => categories[c]),
      categories,
      category_scores: categoryScores,
    };
    const flywheel: FlywheelModerationResult = {
      direction,
      action: decision.action,
      blocked_categories: decision.blocked,
      flagged_categories: decision.flagged,
      pii: { flagged: hit.has('pii'), score: round(analysis.scores.pii), entities: analysis.pii },
      prompt_injection: { flagged: hit.has('prompt_injection'), score: round(analysis.scores.prompt_injection) },
      matches: analysis.matches,
    };
    return { result, flywheel, decision, analysis };
  }

  /** The whole moderation.check / POST /v1/moderations answer for a parsed request. */
  moderate(request: ParsedModerationRequest): ModerationResponse {
    const inputs = typeof request.input === 'string' ? [request.input] : request.input;
    const verdicts = inputs.map((text) => this.check(text, request.direction));
    return {
      id: `modr-${randomUUID().replace(/-/g, '')}`,
      model: this.modelId,
      results: verdicts.map((v) => v.result),
      flywheel_results: verdicts.map((v) => v.flywheel),
    };
  }
}
