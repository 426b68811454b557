/**
 * The store's schema as versioned migrations in code, applied in order by Kysely's Migrator at boot
 * (under its lock, so replicas booting together apply each once). Append new migrations; never edit one
 * that has shipped. Plain SQL, one statement each: the same text runs on Postgres and on PGlite.
 */
import { sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';

const statements = (...texts: string[]): Migration => ({
  async up(db: Kysely<unknown>) {
    for (const text of texts) await sql.raw(text).execute(db);
  },
});

const REVIEW_STATUS_CHECK = `CHECK (review_status IN ('pending', 'approved', 'rejected'))`;

/**
 * Inbox indexes are `(filter, created_at DESC, id DESC)`: a page is one index range scan from the
 * keyset cursor `(created_at, id) < (…)`, however deep it is. Text search is trigram GIN over
 * `search_text` (ILIKE '%…%' uses it).
 */
const initial = statements(
  `CREATE EXTENSION IF NOT EXISTS pg_trgm`,
  `CREATE TABLE completions (
    id text PRIMARY KEY,
    created_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    endpoint text NOT NULL CHECK (endpoint IN ('chat.completions', 'completions')),
    outcome text NOT NULL CHECK (outcome IN ('completed', 'cancelled', 'failed')),
    error jsonb,
    model text NOT NULL,
    policy_version text NOT NULL,
    request jsonb NOT NULL,
    messages jsonb,
    prompts jsonb,
    choices jsonb NOT NULL,
    prompt_tokens integer NOT NULL,
    completion_tokens integer NOT NULL,
    total_tokens integer NOT NULL,
    ttft_ms double precision,
    e2e_ms double precision NOT NULL,
    policy_ttft_ms double precision,
    policy_e2e_ms double precision,
    stream boolean NOT NULL,
    end_user text,
    key_id text NOT NULL,
    request_id text NOT NULL,
    gateway_instance_id text NOT NULL,
    moderation jsonb,
    flagged boolean NOT NULL DEFAULT false,
    reward_score double precision,
    review_status text NOT NULL DEFAULT 'pending' ${REVIEW_STATUS_CHECK},
    search_text text NOT NULL DEFAULT ''
  )`,
  `CREATE INDEX completions_created_idx ON completions (created_at DESC, id DESC)`,
  `CREATE INDEX completions_status_created_idx ON completions (review_status, created_at DESC, id DESC)`,
  `CREATE INDEX completions_policy_created_idx ON completions (policy_version, created_at DESC, id DESC)`,
  `CREATE INDEX completions_flagged_created_idx ON completions (created_at DESC, id DESC) WHERE flagged`,
  `CREATE INDEX completions_search_idx ON completions USING gin (search_text gin_trgm_ops)`,
  `CREATE TABLE feedback (
    id text PRIMARY KEY,
    completion_id text NOT NULL REFERENCES completions (id),
    choice_index integer,
    kind text NOT NULL CHECK (kind IN ('thumbs', 'rating', 'preference', 'correction', 'flag')),
    value jsonb NOT NULL,
    comment text,
    author text,
    source text NOT NULL CHECK (source IN ('user', 'reviewer', 'rule')),
    key_id text NOT NULL,
    idempotency_key text,
    policy_version text NOT NULL,
    created_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    review_status text NOT NULL DEFAULT 'pending' ${REVIEW_STATUS_CHECK},
    reviewed_at timestamptz,
    reviewed_by text,
    search_text text NOT NULL DEFAULT ''
  )`,
  `CREATE UNIQUE INDEX feedback_idempotency_idx ON feedback (key_id, idempotency_key) WHERE idempotency_key IS NOT NULL`,
  `CREATE INDEX feedback_completion_idx ON feedback (completion_id, created_at, id)`,
  `CREATE INDEX feedback_created_idx ON feedback (created_at DESC, id DESC)`,
  `CREATE INDEX feedback_status_created_idx ON feedback (review_status, created_at DESC, id DESC)`,
  `CREATE INDEX feedback_kind_created_idx ON feedback (kind, created_at DESC, id DESC)`,
  `CREATE INDEX feedback_policy_created_idx ON feedback (policy_version, created_at DESC, id DESC)`,
  `CREATE INDEX feedback_flagged_created_idx ON feedback (created_at DESC, id DESC) WHERE kind = 'flag'`,
  `CREATE INDEX feedback_search_idx ON feedback USING gin (search_text gin_trgm_ops)`,
  `CREATE TABLE feedback_orphans (
    id text PRIMARY KEY,
    completion_id text NOT NULL,
    event jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
  )`,
  `CREATE INDEX feedback_orphans_completion_idx ON feedback_orphans (completion_id)`,
  `CREATE TABLE reviews (
    id text PRIMARY KEY,
    target_type text NOT NULL CHECK (target_type IN ('feedback', 'completion')),
    target_id text NOT NULL,
    actor text NOT NULL,
    action text NOT NULL CHECK (action IN ('approve', 'reject', 'edit', 'choose', 'reset')),
    from_status text NOT NULL,
    to_status text NOT NULL,
    note text,
    before jsonb,
    after jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
  )`,
  `CREATE INDEX reviews_target_idx ON reviews (target_type, target_id, created_at)`,
  `CREATE INDEX reviews_created_idx ON reviews (created_at DESC, id DESC)`,
  `CREATE TABLE exports (
    id text PRIMARY KEY,
    format text NOT NULL CHECK (format IN ('sft', 'preference', 'kto')),
    filters jsonb NOT NULL,
    row_count integer NOT NULL,
    bytes integer NOT NULL,
    sha256 text NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
  )`,
  `CREATE TABLE training_runs (
    id text PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('sft', 'reward-train', 'ppo', 'eval')),
    status text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    base_version text,
    export_id text REFERENCES exports (id),
    config jsonb NOT NULL DEFAULT '{}',
    metrics jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz
  )`,
  `CREATE TABLE model_versions (
    id text PRIMARY KEY,
    role text NOT NULL CHECK (role IN ('policy', 'reward', 'moderation')),
    parent_id text REFERENCES model_versions (id),
    training_run_id text REFERENCES training_runs (id),
    checkpoint text,
    status text NOT NULL CHECK (status IN ('candidate', 'active', 'retired', 'rejected')),
    metrics jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    promoted_at timestamptz
  )`,
  `CREATE TABLE dead_letters (
    id text PRIMARY KEY,
    stream text NOT NULL,
    subject text NOT NULL,
    payload text NOT NULL,
    error text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
  )`,
);

/** The admin API keeps each export's JSONL beside its record, so a download works on every replica. */
const exportContent = statements(`ALTER TABLE exports ADD COLUMN content text NOT NULL DEFAULT ''`);

/**
 * The RL loop's runs: six kinds (a `loop` run has its stages as children), the loop's current stage, the
 * error of a failed run, and per-step metrics keyed (run, step) so a resumed job re-logging a step
 * overwrites it. The kind CHECK is the one 0001 declared inline (Postgres named it training_runs_kind_check).
 */
const trainingRunsRl = statements(
  `ALTER TABLE training_runs DROP CONSTRAINT IF EXISTS training_runs_kind_check`,
  `ALTER TABLE training_runs ADD CONSTRAINT training_runs_kind_check CHECK (kind IN ('sft', 'reward-train', 'ppo', 'dpo', 'eval', 'loop'))`,
  `ALTER TABLE training_runs ADD COLUMN parent_run_id text REFERENCES training_runs (id)`,
  `ALTER TABLE training_runs ADD COLUMN stage text`,
  `ALTER TABLE training_runs ADD COLUMN error text`,
  `CREATE INDEX training_runs_parent_created_idx ON training_runs (parent_run_id, created_at DESC, id DESC)`,
  `CREATE INDEX model_versions_training_run_idx ON model_versions (training_run_id)`,
  `CREATE TABLE training_metrics (
    run_id text NOT NULL REFERENCES training_runs (id) ON DELETE CASCADE,
    step integer NOT NULL,
    metrics jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, step)
  )`,
);

/**
 * Reviewers' moderation labels (append-only: a later label on the same text wins in exports, every one stays as
 * the audit trail), the `moderation` export format and the `moderation-train` run kind. The exports format CHECK
 * is the one 0001 declared inline (exports_format_check).
 */
const moderationLabels = statements(
  `CREATE TABLE moderation_labels (
    id text PRIMARY KEY,
    completion_id text NOT NULL REFERENCES completions (id),
    target text NOT NULL CHECK (target IN ('prompt', 'choice')),
    choice_index integer,
    prompt_index integer,
    direction text NOT NULL CHECK (direction IN ('input', 'output')),
    verdict text NOT NULL CHECK (verdict IN ('harmful', 'not_harmful')),
    categories jsonb NOT NULL,
    text text NOT NULL,
    moderation_categories jsonb NOT NULL,
    overturns boolean NOT NULL,
    policy_version text NOT NULL,
    actor text NOT NULL,
    note text,
    created_at timestamptz NOT NULL DEFAULT now()
  )`,
  `CREATE INDEX moderation_labels_completion_idx ON moderation_labels (completion_id, created_at, id)`,
  `CREATE INDEX moderation_labels_created_idx ON moderation_labels (created_at, id)`,
  `ALTER TABLE exports DROP CONSTRAINT IF EXISTS exports_format_check`,
  `ALTER TABLE exports ADD CONSTRAINT exports_format_check CHECK (format IN ('sft', 'preference', 'kto', 'moderation'))`,
  `ALTER TABLE training_runs DROP CONSTRAINT IF EXISTS training_runs_kind_check`,
  `ALTER TABLE training_runs ADD CONSTRAINT training_runs_kind_check CHECK (kind IN ('sft', 'reward-train', 'ppo', 'dpo', 'eval', 'loop', 'moderation-train'))`,
);

/** The critic-free optimisers' run kind (GRPO, RLOO, REINFORCE++ share the `grpo` job). */
const grpoRuns = statements(
  `ALTER TABLE training_runs DROP CONSTRAINT IF EXISTS training_runs_kind_check`,
  `ALTER TABLE training_runs ADD CONSTRAINT training_runs_kind_check CHECK (kind IN ('sft', 'reward-train', 'ppo', 'dpo', 'eval', 'loop', 'moderation-train', 'grpo'))`,
);

/**
 * Review data worth training on (issue 21): the `prompts` export format (the RL prompt set from live traffic), and
 * each reviewer's current decision on a feedback, so several reviewers can decide one item (FLYWHEEL_REVIEW_OVERLAP)
 * and their agreement can be measured. One row per (feedback, reviewer): a later decision replaces the earlier one
 * and takes a new `seq`, which orders decisions (timestamps can tie). Decisions already made become the deciding
 * reviewer's row. The exports format CHECK is the one 0004 named.
 */
const reviewData = statements(
  `ALTER TABLE exports DROP CONSTRAINT IF EXISTS exports_format_check`,
  `ALTER TABLE exports ADD CONSTRAINT exports_format_check CHECK (format IN ('sft', 'preference', 'kto', 'moderation', 'prompts'))`,
  `CREATE TABLE review_votes (
    feedback_id text NOT NULL REFERENCES feedback (id),
    actor text NOT NULL,
    decision text NOT NULL CHECK (decision IN ('approve', 'reject')),
    seq bigserial NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (feedback_id, actor)
  )`,
  `INSERT INTO review_votes (feedback_id, actor, decision, created_at)
    SELECT id, reviewed_by, CASE review_status WHEN 'approved' THEN 'approve' ELSE 'reject' END, reviewed_at
    FROM feedback
    WHERE review_status IN ('approved', 'rejected') AND reviewed_by IS NOT NULL AND reviewed_at IS NOT NULL
    ORDER BY reviewed_at, id`,
);

/** The KTO run kind (offline optimisation on thumbs and ratings, beside DPO on pairs). */
const ktoRuns = statements(
  `ALTER TABLE training_runs DROP CONSTRAINT IF EXISTS training_runs_kind_check`,
  `ALTER TABLE training_runs ADD CONSTRAINT training_runs_kind_check CHECK (kind IN ('sft', 'reward-train', 'ppo', 'dpo', 'eval', 'loop', 'moderation-train', 'grpo', 'kto'))`,
);

/**
 * The blind A/B queue (issue 21): pairs of a candidate's and the active version's outputs on one prompt, shown to
 * reviewers as A and B in an order drawn once at insert (`candidate_side` says which is the candidate, and never
 * leaves the server before a verdict). One row per (eval run, pair index), so an eval job that runs again adds
 * nothing twice. `min_verdicts`: how many verdicts decide the candidate's A/B (the eval job's abWait).
 */
const abReviews = statements(
  `CREATE TABLE ab_reviews (
    id text PRIMARY KEY,
    eval_run_id text NOT NULL,
    pair_index integer NOT NULL,
    candidate_version text NOT NULL,
    active_version text NOT NULL,
    prompt jsonb NOT NULL,
    output_a text NOT NULL,
    output_b text NOT NULL,
    candidate_side text NOT NULL CHECK (candidate_side IN ('a', 'b')),
    min_verdicts integer NOT NULL CHECK (min_verdicts > 0),
    verdict text CHECK (verdict IN ('a', 'b', 'tie')),
    reviewer text,
    created_at timestamptz NOT NULL DEFAULT now(),
    decided_at timestamptz,
    UNIQUE (eval_run_id, pair_index),
    CHECK ((verdict IS NULL) = (reviewer IS NULL) AND (verdict IS NULL) = (decided_at IS NULL))
  )`,
  `CREATE INDEX ab_reviews_pending_idx ON ab_reviews (created_at, eval_run_id, pair_index) WHERE verdict IS NULL`,
  `CREATE INDEX ab_reviews_candidate_idx ON ab_reviews (candidate_version)`,
);

/** The `external` run kind: a loop stage that hands its data to a cluster trainer and takes back its checkpoint. */
const externalRuns = statements(
  `ALTER TABLE training_runs DROP CONSTRAINT IF EXISTS training_runs_kind_check`,
  `ALTER TABLE training_runs ADD CONSTRAINT training_runs_kind_check CHECK (kind IN ('sft', 'reward-train', 'ppo', 'dpo', 'eval', 'loop', 'moderation-train', 'grpo', 'kto', 'external'))`,
);

/**
 * N-way rankings (issue 21): the `ranking` feedback kind (choice indices best first) and the reviewer's `rank`
 * action that records one. Both CHECKs are the ones 0001 declared inline (feedback_kind_check, reviews_action_check).
 */
const rankings = statements(
  `ALTER TABLE feedback DROP CONSTRAINT IF EXISTS feedback_kind_check`,
  `ALTER TABLE feedback ADD CONSTRAINT feedback_kind_check CHECK (kind IN ('thumbs', 'rating', 'preference', 'correction', 'flag', 'ranking'))`,
  `ALTER TABLE reviews DROP CONSTRAINT IF EXISTS reviews_action_check`,
  `ALTER TABLE reviews ADD CONSTRAINT reviews_action_check CHECK (action IN ('approve', 'reject', 'edit', 'choose', 'reset', 'rank'))`,
);

/** Every migration, by name; names sort in the order they apply. */
export const STORE_MIGRATIONS: Readonly<Record<string, Migration>> = {
  '0001_initial': initial,
  '0002_export_content': exportContent,
  '0003_training_runs_rl': trainingRunsRl,
  '0004_moderation_labels': moderationLabels,
  '0005_grpo_runs': grpoRuns,
  '0006_review_data': reviewData,
  '0007_kto_runs': ktoRuns,
  '0008_ab_reviews': abReviews,
  '0009_external_runs': externalRuns,
  '0010_rankings': rankings,
};

export const storeMigrationProvider: MigrationProvider = {
  getMigrations: async () => ({ ...STORE_MIGRATIONS }),
};
