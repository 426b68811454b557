/**
 * The admin API's wire shapes (gateway, under /admin/api): session, inbox, conversation view, review
 * actions, exports and dashboard stats, as zod schemas plus their types. The admin UI imports these too.
 * snake_case fields and ISO 8601 timestamps (strings); errors are OpenAI's `{error: {...}}` shape
 * (openAiErrorBodySchema). Nothing here does I/O.
 */
import { z } from 'zod';
import { FEEDBACK_KINDS, FEEDBACK_SOURCES, REVIEW_STATUSES, feedbackValueSchemas } from './feedback.schemas';
import { moderationLabelSchema } from './moderation-labels.schemas';

/** Cookie holding the session id: httpOnly, SameSite=Strict, Path=/admin. */
export const ADMIN_SESSION_COOKIE = 'flywheel_admin_session';
/** Header every mutating admin request (POST, DELETE) must carry: the session's csrf token. */
export const ADMIN_CSRF_HEADER = 'x-csrf-token';

const isoDate = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO 8601 date or date-time');
const idText = z.string().min(1).max(128);

// ---------------------------------------------------------------- session

/** POST /admin/api/session. The key is an admin key of FLYWHEEL_ADMIN_KEYS (a user key: 403). */
export const adminLoginBodySchema = z.object({ key: z.string().min(1).max(512).regex(/^\S+$/, 'must be an admin key (no spaces)') }).strict();
export type AdminLoginBody = z.infer<typeof adminLoginBodySchema>;

/** Answer of POST and GET /admin/api/session. GET lets a reloaded page recover its csrf token. */
export const adminSessionSchema = z.object({
  csrf_token: z.string(),
  /** `key_<12 hex>` of the admin key: what the audit trail records as the actor. */
  key_id: z.string(),
  expires_at: z.string(),
});
export type AdminSession = z.infer<typeof adminSessionSchema>;

// ---------------------------------------------------------------- inbox

export const ADMIN_INBOX_VIEWS = ['feedback', 'completions'] as const;
export type AdminInboxView = (typeof ADMIN_INBOX_VIEWS)[number];

/**
 * GET /admin/api/inbox query (all strings, as a URL carries them). `kind` applies to view=feedback only
 * (400 otherwise). `status` is the feedback's review status, or the completion's in view=completions.
 * `flagged=true`: flags only (feedback), or completions moderation flagged or flag feedback marked.
 * `from` inclusive, `to` exclusive. `cursor` is `next_cursor` of the previous page.
 */
export const adminInboxQuerySchema = z
  .object({
    view: z.enum(ADMIN_INBOX_VIEWS).default('feedback'),
    status: z.enum(REVIEW_STATUSES).optional(),
    kind: z.enum(FEEDBACK_KINDS).optional(),
    policy_version: z.string().min(1).max(128).optional(),
    flagged: z.enum(['true', 'false']).transform((v) => v === 'true').optional(),
    from: isoDate.optional(),
    to: isoDate.optional(),
    /** Case-insensitive substring (≥ 1 char; trigram index from 3 chars up). */
    q: z.string().min(1).max(256).optional(),
    cursor: z.string().min(1).max(512).optional(),
    limit: z.coerce.number().int().min(1).max(200).default(50),
  })
  .strict();
export type AdminInboxQuery = z.input<typeof adminInboxQuerySchema>;
export type AdminInboxQueryParsed = z.output<typeof adminInboxQuerySchema>;

/** A feedback row as the admin API shows it. */
export const adminFeedbackSchema = z.object({
  id: z.string(),
  completion_id: z.string(),
  choice_index: z.number().int().nullable(),
  kind: z.enum(FEEDBACK_KINDS),
  /** As feedbackValueSchemas[kind]: "up"/"down", 1–5, {chosen, rejected}, corrected text, category slug, choice indices best first. */
  value: z.unknown(),
  comment: z.string().nullable(),
  author: z.string().nullable(),
  source: z.enum(FEEDBACK_SOURCES),
  key_id: z.string(),
  policy_version: z.string(),
  created_at: z.string(),
  review_status: z.enum(REVIEW_STATUSES),
  reviewed_at: z.string().nullable(),
  reviewed_by: z.string().nullable(),
});
export type AdminFeedback = z.infer<typeof adminFeedbackSchema>;

/** An inbox row of view=feedback: the feedback plus the first characters of its completion's text. */
export const adminFeedbackInboxItemSchema = adminFeedbackSchema.extend({
  /** Prompt and choice texts of the completion, cut to 200 characters; null if not in the store. */
  completion_preview: z.string().nullable(),
});
export type AdminFeedbackInboxItem = z.infer<typeof adminFeedbackInboxItemSchema>;

/** An inbox row of view=completions. */
export const adminCompletionSummarySchema = z.object({
  id: z.string(),
  created_at: z.string(),
  endpoint: z.enum(['chat.completions', 'completions']),
  model: z.string(),
  policy_version: z.string(),
  outcome: z.enum(['completed', 'cancelled', 'failed']),
  flagged: z.boolean(),
  review_status: z.enum(REVIEW_STATUSES),
  choice_count: z.number().int(),
  feedback_count: z.number().int(),
  /** Prompt and choice texts, cut to 200 characters. */
  preview: z.string(),
});
export type AdminCompletionSummary = z.infer<typeof adminCompletionSummarySchema>;

export const adminFeedbackInboxPageSchema = z.object({
  object: z.literal('list'),
  view: z.literal('feedback'),
  data: z.array(adminFeedbackInboxItemSchema),
  /** null on the last page. */
  next_cursor: z.string().nullable(),
});
export const adminCompletionInboxPageSchema = z.object({
  object: z.literal('list'),
  view: z.literal('completions'),
  data: z.array(adminCompletionSummarySchema),
  next_cursor: z.string().nullable(),
});
export const adminInboxPageSchema = z.discriminatedUnion('view', [adminFeedbackInboxPageSchema, adminCompletionInboxPageSchema]);
export type AdminInboxPage = z.infer<typeof adminInboxPageSchema>;

/** GET /admin/api/policy-versions: the versions the store has seen, for filter drop-downs. */
export const adminPolicyVersionsSchema = z.object({ data: z.array(z.string()) });
export type AdminPolicyVersions = z.infer<typeof adminPolicyVersionsSchema>;

// ---------------------------------------------------------------- conversation view

export const adminChoiceSchema = z.object({
  index: z.number().int(),
  prompt_index: z.number().int(),
  /** What the client received (cut where output moderation blocked). */
  text: z.string(),
  finish_reason: z.enum(['stop', 'length', 'content_filter']).nullable(),
  token_count: z.number().int(),
});
export type AdminChoice = z.infer<typeof adminChoiceSchema>;

/** What a review row records; `choose` and `rank` create the feedback they approve. */
export const ADMIN_REVIEW_ACTIONS = ['approve', 'reject', 'edit', 'choose', 'reset', 'rank'] as const;
export type AdminReviewActionName = (typeof ADMIN_REVIEW_ACTIONS)[number];

export const adminReviewSchema = z.object({
  id: z.string(),
  target_type: z.enum(['feedback', 'completion']),
  target_id: z.string(),
  actor: z.string(),
  action: z.enum(ADMIN_REVIEW_ACTIONS),
  from_status: z.enum(REVIEW_STATUSES),
  to_status: z.enum(REVIEW_STATUSES),
  note: z.string().nullable(),
  before: z.unknown(),
  after: z.unknown(),
  created_at: z.string(),
});
export type AdminReview = z.infer<typeof adminReviewSchema>;

/** GET /admin/api/completions/:id. */
export const adminCompletionDetailSchema = z.object({
  id: z.string(),
  created_at: z.string(),
  endpoint: z.enum(['chat.completions', 'completions']),
  model: z.string(),
  policy_version: z.string(),
  outcome: z.enum(['completed', 'cancelled', 'failed']),
  error: z.object({ code: z.string().nullable(), message: z.string() }).nullable(),
  /** Chat: the conversation as the policy saw it. */
  messages: z.array(z.object({ role: z.string(), content: z.string() })).nullable(),
  /** Completions: prompts as text, or token ids when sent as ids. */
  prompts: z.array(z.union([z.string(), z.array(z.number())])).nullable(),
  choices: z.array(adminChoiceSchema),
  usage: z.object({ prompt_tokens: z.number(), completion_tokens: z.number(), total_tokens: z.number() }),
  latencies: z.object({ ttft_ms: z.number().nullable(), e2e_ms: z.number() }),
  /** The record's moderation verdicts (completionModerationSchema) or null when it carries none. */
  moderation: z.unknown(),
  flagged: z.boolean(),
  /** Reward model score; null until the reward service scores completions. */
  reward_score: z.number().nullable(),
  review_status: z.enum(REVIEW_STATUSES),
  key_id: z.string(),
  end_user: z.string().nullable(),
  /** Every feedback on it, oldest first. */
  feedback: z.array(adminFeedbackSchema),
  /** Audit trail of its feedback and of itself, oldest first. */
  reviews: z.array(adminReviewSchema),
  /** Reviewers' moderation labels on its prompt and choices, oldest first (a later one on the same text wins). */
  moderation_labels: z.array(moderationLabelSchema),
});
export type AdminCompletionDetail = z.infer<typeof adminCompletionDetailSchema>;

// ---------------------------------------------------------------- review actions

const note = z.string().max(4_096).optional();

/**
 * One decision. approve / reject / reset (back to pending) act on a feedback. edit replaces the text of
 * a correction and approves it. choose records the reviewer's pick between two choices of a completion
 * as a new preference feedback (source "reviewer"), approved; rank records the reviewer's order of every choice
 * of a completion (best first, a complete ranking as feedbackValueSchemas.ranking) as a new ranking feedback, approved.
 */
export const adminReviewActionSchema = z.discriminatedUnion('action', [
  z.object({ action: z.literal('approve'), feedback_id: idText, note }).strict(),
  z.object({ action: z.literal('reject'), feedback_id: idText, note }).strict(),
  z.object({ action: z.literal('reset'), feedback_id: idText, note }).strict(),
  z.object({ action: z.literal('edit'), feedback_id: idText, text: feedbackValueSchemas.correction, note }).strict(),
  z
    .object({
      action: z.literal('choose'),
      completion_id: idText,
      chosen: z.number().int().min(0).max(127),
      rejected: z.number().int().min(0).max(127),
      note,
    })
    .strict()
    .refine((v) => v.chosen !== v.rejected, { message: 'chosen and rejected must be different choices', path: ['rejected'] }),
  z.object({ action: z.literal('rank'), completion_id: idText, order: feedbackValueSchemas.ranking, note }).strict(),
]);
export type AdminReviewAction = z.infer<typeof adminReviewActionSchema>;

/** POST /admin/api/reviews: one or many decisions; each applies in its own transaction. */
export const adminReviewsBodySchema = z.object({ actions: z.array(adminReviewActionSchema).min(1).max(500) }).strict();
export type AdminReviewsBody = z.infer<typeof adminReviewsBodySchema>;

export const ADMIN_REVIEW_ERROR_CODES = ['not_found', 'wrong_kind', 'invalid_choice'] as const;

export const adminReviewResultSchema = z.discriminatedUnion('ok', [
  z.object({
    ok: z.literal(true),
    /** Position in `actions`. */
    index: z.number().int(),
    /** The feedback decided (for choose: the preference created; for rank: the ranking created). */
    feedback: adminFeedbackSchema,
    review: adminReviewSchema,
  }),
  z.object({
    ok: z.literal(false),
    index: z.number().int(),
    error: z.object({ code: z.enum(ADMIN_REVIEW_ERROR_CODES), message: z.string() }),
  }),
]);
export type AdminReviewResult = z.infer<typeof adminReviewResultSchema>;

/** 200 even when some actions failed: look at each result. */
export const adminReviewsResponseSchema = z.object({
  results: z.array(adminReviewResultSchema),
  applied: z.number().int(),
  failed: z.number().int(),
});
export type AdminReviewsResponse = z.infer<typeof adminReviewsResponseSchema>;

// ---------------------------------------------------------------- exports

export const EXPORT_FORMATS = ['sft', 'preference', 'kto', 'moderation', 'prompts'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

/**
 * Which approved feedback an export takes: by policy version and feedback creation time (`prompts`, which reads
 * live traffic rather than feedback: the completion's policy version and creation time).
 */
export const adminExportFiltersSchema = z
  .object({
    policy_version: z.string().min(1).max(128).optional(),
    from: isoDate.optional(),
    to: isoDate.optional(),
  })
  .strict();
export type AdminExportFilters = z.infer<typeof adminExportFiltersSchema>;

/** POST /admin/api/exports. */
export const adminExportCreateBodySchema = z
  .object({ format: z.enum(EXPORT_FORMATS), filters: adminExportFiltersSchema.optional() })
  .strict();
export type AdminExportCreateBody = z.infer<typeof adminExportCreateBodySchema>;

export const adminExportSchema = z.object({
  id: z.string(),
  format: z.enum(EXPORT_FORMATS),
  filters: adminExportFiltersSchema,
  row_count: z.number().int(),
  bytes: z.number().int(),
  /** Hex sha256 of the JSONL file. */
  sha256: z.string(),
  created_by: z.string(),
  created_at: z.string(),
  /** `/admin/api/exports/<id>/download`. */
  download_url: z.string(),
});
export type AdminExport = z.infer<typeof adminExportSchema>;

/** GET /admin/api/exports: newest first. */
export const adminExportListSchema = z.object({ object: z.literal('list'), data: z.array(adminExportSchema) });
export type AdminExportList = z.infer<typeof adminExportListSchema>;

/** One JSONL line of each format (chat messages; a text prompt becomes one user message). */
const exportMessage = z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() });
/**
 * TRL's `tools` column: the functions the conversation could call (OpenAI's `{type: 'function', function}` or the
 * bare function), rendered into the prompt as at serving time. Calls and results are in the messages as the model
 * wrote and read them (Hermes `<tool_call>` / `<tool_response>` text).
 */
const exportTool = z.union([
  z.object({ type: z.literal('function'), function: z.object({ name: z.string(), description: z.string().optional(), parameters: z.record(z.string(), z.unknown()) }) }),
  z.object({ name: z.string(), description: z.string().optional(), parameters: z.record(z.string(), z.unknown()) }),
]);
export type ExportTool = z.infer<typeof exportTool>;
const exportTools = z.array(exportTool).optional();
export const sftExportLineSchema = z.object({ messages: z.array(exportMessage), tools: exportTools });
export const preferenceExportLineSchema = z.object({
  tools: exportTools,
  prompt: z.array(exportMessage),
  chosen: z.array(exportMessage),
  rejected: z.array(exportMessage),
});
export const ktoExportLineSchema = z.object({
  tools: exportTools,
  prompt: z.array(exportMessage),
  completion: z.array(exportMessage),
  label: z.boolean(),
});
/** The RL prompt set from live traffic: one distinct prompt per line, the shape libs/rl parsePromptSet reads. */
export const promptsExportLineSchema = z.object({ tools: exportTools, prompt: z.array(exportMessage).min(1) });
export type SftExportLine = z.infer<typeof sftExportLineSchema>;
export type PreferenceExportLine = z.infer<typeof preferenceExportLineSchema>;
export type KtoExportLine = z.infer<typeof ktoExportLineSchema>;
export type PromptsExportLine = z.infer<typeof promptsExportLineSchema>;

// ---------------------------------------------------------------- stats

export const STATS_BUCKETS = ['hour', 'day'] as const;
export type StatsBucket = (typeof STATS_BUCKETS)[number];

/** GET /admin/api/stats query. Defaults: to = now, from = to − 48 h (hour) or − 30 days (day); ≤ 2000 buckets. */
export const adminStatsQuerySchema = z
  .object({
    bucket: z.enum(STATS_BUCKETS).default('day'),
    from: isoDate.optional(),
    to: isoDate.optional(),
    policy_version: z.string().min(1).max(128).optional(),
  })
  .strict();
export type AdminStatsQuery = z.input<typeof adminStatsQuerySchema>;

const kindCounts = z.object({ thumbs: z.number(), rating: z.number(), preference: z.number(), correction: z.number(), flag: z.number(), ranking: z.number() });
const statusCounts = z.object({ pending: z.number(), approved: z.number(), rejected: z.number() });
/** Counts of ratings 1..5 (keys "1".."5"). */
const ratingCounts = z.object({ '1': z.number(), '2': z.number(), '3': z.number(), '4': z.number(), '5': z.number() });
/**
 * Krippendorff's α over the units that more than one coder judged: 1 perfect agreement, 0 no better than chance,
 * below 0 systematic disagreement; null when it is undefined (no such unit, or every value the same).
 */
const agreementSchema = z.object({
  alpha: z.number().nullable(),
  /** Units with two or more values. */
  units: z.number().int(),
  /** Values in those units (Krippendorff's n). */
  values: z.number().int(),
});
export type AdminAgreement = z.infer<typeof agreementSchema>;

export const adminStatsSchema = z.object({
  bucket: z.enum(STATS_BUCKETS),
  from: z.string(),
  to: z.string(),
  /** Feedback created per bucket (bucket start, UTC), every bucket in range present (zeros included). */
  volume: z.array(z.object({ t: z.string(), total: z.number(), by_kind: kindCounts })),
  totals: z.object({
    feedback: z.number(),
    by_kind: kindCounts,
    by_status: statusCounts,
    /** approved ÷ (approved + rejected); null when nothing is decided. */
    approval_rate: z.number().nullable(),
    rating_distribution: ratingCounts,
  }),
  per_policy_version: z.array(
    z.object({
      policy_version: z.string(),
      feedback: z.number(),
      by_status: statusCounts,
      approval_rate: z.number().nullable(),
      rating_distribution: ratingCounts,
      /** Mean of ratings; null without ratings. */
      mean_rating: z.number().nullable(),
      thumbs_up: z.number(),
      thumbs_down: z.number(),
    }),
  ),
  /** Agreement among the people who judged the same item, over feedback created in the range. */
  agreement: z.object({
    /** Reviewers' decisions an item needs before the majority decides it (FLYWHEEL_REVIEW_OVERLAP). */
    review_overlap: z.number().int(),
    /** Nominal α of reviewers' approve / reject decisions on feedback more than one reviewer decided. */
    decisions: agreementSchema,
    /** Interval α of 1–5 ratings on choices more than one rater (author, else API key) rated. */
    ratings: agreementSchema,
  }),
});
export type AdminStats = z.infer<typeof adminStatsSchema>;

// ---------------------------------------------------------------- blind A/B queue

export const AB_VERDICTS = ['a', 'b', 'tie'] as const;
/** A reviewer's verdict on a pair: output A better, output B better, or a tie. */
export const abVerdictSchema = z.enum(AB_VERDICTS);
export type AbVerdict = z.infer<typeof abVerdictSchema>;

const abPromptSchema = z.array(exportMessage);

/**
 * One pending pair as reviewers see it: the prompt and two outputs, a candidate's and the active version's in an
 * order drawn when the pair was queued. Neither version nor which side is which: the review is blind.
 */
export const adminAbItemSchema = z.object({
  id: z.string(),
  prompt: abPromptSchema,
  output_a: z.string(),
  output_b: z.string(),
  created_at: z.string(),
});
export type AdminAbItem = z.infer<typeof adminAbItemSchema>;

/** GET /admin/api/ab query. */
export const adminAbQueueQuerySchema = z.object({ limit: z.coerce.number().int().min(1).max(100).default(20) }).strict();

/** GET /admin/api/ab: the oldest pending pairs first, and how many are pending in all. */
export const adminAbQueueSchema = z.object({ object: z.literal('list'), data: z.array(adminAbItemSchema), pending: z.number().int() });
export type AdminAbQueue = z.infer<typeof adminAbQueueSchema>;

/** POST /admin/api/ab/:id (CSRF). A pair takes one verdict: a second is 409 already_decided, an unknown id 404. */
export const adminAbVerdictBodySchema = z.object({ verdict: abVerdictSchema }).strict();
export type AdminAbVerdictBody = z.infer<typeof adminAbVerdictBodySchema>;

/** Still blind: which side was the candidate is not told, so it cannot steer the next verdict. */
export const adminAbVerdictResultSchema = z.object({ id: z.string(), verdict: abVerdictSchema, pending: z.number().int() });
export type AdminAbVerdictResult = z.infer<typeof adminAbVerdictResultSchema>;

/**
 * The verdicts on one candidate version's pairs. win_rate = (candidate wins + ties / 2) / verdicts; interval: its 95%
 * Wilson interval. decided: at least min_verdicts verdicts; decision then 'refuse' when the interval lies wholly
 * below 0.5 (reviewers significantly prefer the active version), else 'promote'.
 */
export const adminAbSummarySchema = z.object({
  candidate_version: z.string(),
  active_version: z.string(),
  items: z.number().int(),
  pending: z.number().int(),
  verdicts: z.number().int(),
  candidate_wins: z.number().int(),
  active_wins: z.number().int(),
  ties: z.number().int(),
  win_rate: z.number().nullable(),
  interval: z.object({ low: z.number(), high: z.number() }).nullable(),
  min_verdicts: z.number().int(),
  decided: z.boolean(),
  decision: z.enum(['pending', 'promote', 'refuse']),
});
export type AdminAbSummary = z.infer<typeof adminAbSummarySchema>;

/** GET /admin/api/ab/summary: every candidate with pairs queued, the most recently queued first. */
export const adminAbSummaryListSchema = z.object({ object: z.literal('list'), data: z.array(adminAbSummarySchema) });
export type AdminAbSummaryList = z.infer<typeof adminAbSummaryListSchema>;

/**
 * POST /admin/api/ab/candidates/:version/decide (CSRF): acts on a decided A/B, for a candidate an eval job held with
 * abWait (or any other): 'promote' makes it the active policy (one KV write, as Promote on the Models page),
 * 'refuse' marks its version row rejected. 409 ab_undecided before min_verdicts verdicts; 404 without pairs.
 */
export const adminAbDecisionSchema = z.object({
  candidate_version: z.string(),
  outcome: z.enum(['promoted', 'refused']),
  summary: adminAbSummarySchema,
});
export type AdminAbDecision = z.infer<typeof adminAbDecisionSchema>;
