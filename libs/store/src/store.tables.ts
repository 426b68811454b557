/**
 * The store's tables as Kysely types: what a row holds and which columns the database fills.
 * They mirror store.migrations.ts (the migrations are the truth; a spec checks the two agree).
 * Not wire shapes: those live in @flywheel/contracts.
 */
import type { ColumnType, Insertable, Selectable } from 'kysely';
import type { AbVerdict, AdminReviewActionName, ExportFormat, FeedbackKind, LabelCategory, ModerationDirection, ModerationLabelTarget, ModerationLabelVerdict, FeedbackSource, ReviewStatus, TrainingRunKind, TrainingRunStatus } from '@flywheel/contracts';

/** A reviewer's decision on a feedback, as review_votes stores it. */
export type ReviewDecision = 'approve' | 'reject';

/** A timestamptz: read as Date, written as Date or ISO string. */
type Timestamp = ColumnType<Date, Date | string, Date | string>;
type TimestampDefault = ColumnType<Date, Date | string | undefined, Date | string>;
/** JSON written as its text (pg and PGlite both cast text to jsonb), read back parsed. */
type Json<T> = ColumnType<T, string, string>;
type NullableJson<T> = ColumnType<T | null, string | null, string | null>;
/** A nullable column added by a later migration: optional on insert. */
type NullableText = ColumnType<string | null, string | null | undefined, string | null>;

export interface CompletionsTable {
  id: string;
  created_at: Timestamp;
  /** When the store writer committed it. */
  recorded_at: TimestampDefault;
  endpoint: 'chat.completions' | 'completions';
  /** completed | cancelled | failed: how the response ended (the record's `status`). */
  outcome: 'completed' | 'cancelled' | 'failed';
  error: NullableJson<{ code: string | null; message: string }>;
  model: string;
  policy_version: string;
  request: Json<Record<string, unknown>>;
  messages: NullableJson<unknown[]>;
  prompts: NullableJson<unknown[]>;
  choices: Json<unknown[]>;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  ttft_ms: number | null;
  e2e_ms: number;
  policy_ttft_ms: number | null;
  policy_e2e_ms: number | null;
  stream: boolean;
  end_user: string | null;
  key_id: string;
  request_id: string;
  gateway_instance_id: string;
  /** Moderation verdicts of input and output, when the record carries them. */
  moderation: NullableJson<unknown>;
  /** Moderation flagged it, or a `flag` feedback arrived. */
  flagged: ColumnType<boolean, boolean | undefined, boolean>;
  reward_score: number | null;
  review_status: ColumnType<ReviewStatus, ReviewStatus | undefined, ReviewStatus>;
  /** Prompt and choice texts, for trigram search; capped at SEARCH_TEXT_MAX_CHARS. */
  search_text: string;
}

export interface FeedbackTable {
  id: string;
  completion_id: string;
  choice_index: number | null;
  kind: FeedbackKind;
  value: Json<unknown>;
  comment: string | null;
  author: string | null;
  source: FeedbackSource;
  key_id: string;
  idempotency_key: string | null;
  /** The completion's policy version, copied here so the inbox filters without a join. */
  policy_version: string;
  created_at: Timestamp;
  recorded_at: TimestampDefault;
  review_status: ColumnType<ReviewStatus, ReviewStatus | undefined, ReviewStatus>;
  reviewed_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  reviewed_by: string | null;
  search_text: string;
}

/** Feedback whose completion is not in the store yet; moved into `feedback` when it lands. */
export interface FeedbackOrphansTable {
  id: string;
  completion_id: string;
  event: Json<unknown>;
  received_at: TimestampDefault;
}

export interface ReviewsTable {
  id: string;
  target_type: 'feedback' | 'completion';
  target_id: string;
  /** Admin key id or reviewer name. */
  actor: string;
  action: AdminReviewActionName;
  from_status: ReviewStatus;
  to_status: ReviewStatus;
  note: string | null;
  before: NullableJson<unknown>;
  after: NullableJson<unknown>;
  created_at: TimestampDefault;
}

/**
 * A reviewer's current decision on a feedback (migration 0006): one row per (feedback, reviewer); deciding again
 * replaces it. The feedback's review_status follows from these (review.writes.ts statusOfVotes).
 */
export interface ReviewVotesTable {
  feedback_id: string;
  actor: string;
  decision: ReviewDecision;
  /** Order of decisions (bigserial, read as text); the database assigns it. */
  seq: ColumnType<string, never, never>;
  created_at: TimestampDefault;
}

export interface ExportsTable {
  id: string;
  format: ExportFormat;
  filters: Json<Record<string, unknown>>;
  row_count: number;
  bytes: number;
  sha256: string;
  created_by: string;
  created_at: TimestampDefault;
  /** The JSONL file itself (migration 0002). */
  content: ColumnType<string, string | undefined, string>;
}

/** A training job's run, or a loop run whose stages are child runs (migration 0003). */
export interface TrainingRunsTable {
  id: string;
  kind: TrainingRunKind;
  status: TrainingRunStatus;
  base_version: string | null;
  export_id: string | null;
  config: Json<Record<string, unknown>>;
  /** Summary metrics; per-step ones are in training_metrics. */
  metrics: Json<Record<string, unknown>>;
  created_at: TimestampDefault;
  started_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  finished_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  /** The loop run this is a stage of. */
  parent_run_id: NullableText;
  /** A loop's current (or last) stage. */
  stage: NullableText;
  error: NullableText;
}

/** One optimizer step's metrics of a run: name → number, null where not finite. */
export interface TrainingMetricsTable {
  run_id: string;
  step: number;
  metrics: Json<Record<string, number | null>>;
  created_at: TimestampDefault;
}

export interface ModelVersionsTable {
  /** The version string completions carry as `policy_version`. */
  id: string;
  role: 'policy' | 'reward' | 'moderation';
  parent_id: string | null;
  training_run_id: string | null;
  /** Object name in the `checkpoints` object store. */
  checkpoint: string | null;
  status: 'candidate' | 'active' | 'retired' | 'rejected';
  metrics: Json<Record<string, unknown>>;
  created_at: TimestampDefault;
  promoted_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

/** Messages the writer could not parse: kept, not dropped, for someone to look at. */
export interface DeadLettersTable {
  /** `<stream>:<stream sequence>`. */
  id: string;
  stream: string;
  subject: string;
  payload: string;
  error: string;
  received_at: TimestampDefault;
}

/** A reviewer's moderation label on a prompt or choice text (migration 0004); append-only. */
export interface ModerationLabelsTable {
  id: string;
  completion_id: string;
  target: ModerationLabelTarget;
  choice_index: number | null;
  prompt_index: number | null;
  direction: ModerationDirection;
  verdict: ModerationLabelVerdict;
  categories: Json<LabelCategory[]>;
  /** The text labelled, as it was then. */
  text: string;
  /** What moderation had flagged or blocked on it. */
  moderation_categories: Json<string[]>;
  overturns: boolean;
  policy_version: string;
  actor: string;
  note: string | null;
  created_at: TimestampDefault;
}

/** A side of a blind A/B pair (a reviewer's verdict is one, or 'tie': contracts' AbVerdict; migration 0008). */
export type AbSide = Exclude<AbVerdict, 'tie'>;
/** The chat messages both versions of a blind A/B pair answered. */
export type AbPrompt = Array<{ role: 'system' | 'user' | 'assistant'; content: string }>;

/** One blind A/B pair: a candidate's and the active version's output on one prompt (migration 0008). */
export interface AbReviewsTable {
  id: string;
  eval_run_id: string;
  /** Position of the pair in its eval run (the prompt's index). */
  pair_index: number;
  candidate_version: string;
  active_version: string;
  prompt: Json<AbPrompt>;
  output_a: string;
  output_b: string;
  /** Which of A and B is the candidate's output; drawn at insert, never shown before a verdict. */
  candidate_side: AbSide;
  min_verdicts: number;
  verdict: ColumnType<AbVerdict | null, AbVerdict | null | undefined, AbVerdict | null>;
  reviewer: NullableText;
  created_at: TimestampDefault;
  decided_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
}

export interface StoreTables {
  completions: CompletionsTable;
  feedback: FeedbackTable;
  feedback_orphans: FeedbackOrphansTable;
  reviews: ReviewsTable;
  review_votes: ReviewVotesTable;
  exports: ExportsTable;
  training_runs: TrainingRunsTable;
  training_metrics: TrainingMetricsTable;
  model_versions: ModelVersionsTable;
  dead_letters: DeadLettersTable;
  moderation_labels: ModerationLabelsTable;
  ab_reviews: AbReviewsTable;
}

export type CompletionRow = Selectable<CompletionsTable>;
export type NewCompletionRow = Insertable<CompletionsTable>;
export type FeedbackRow = Selectable<FeedbackTable>;
export type NewFeedbackRow = Insertable<FeedbackTable>;
export type ReviewRow = Selectable<ReviewsTable>;
export type ReviewVoteRow = Selectable<ReviewVotesTable>;
export type ExportRow = Selectable<ExportsTable>;
export type ModerationLabelRow = Selectable<ModerationLabelsTable>;

export const SEARCH_TEXT_MAX_CHARS = 8_192;
