/**
 * Feedback on served completions as wire shapes: the POST /v1/feedback body (snake_case, OpenAI style),
 * the feedback object the API answers with, and the event the gateway publishes on JetStream stream
 * FEEDBACK (subject `flywheel.feedback.<id>`, Nats-Msg-Id = id) for the store writer. Also the
 * time-ordered ids feedback uses. Nothing here does I/O.
 */
import { z } from 'zod';
import { STREAMS } from './subjects';

export const FEEDBACK_KINDS = ['thumbs', 'rating', 'preference', 'correction', 'flag', 'ranking'] as const;
export type FeedbackKind = (typeof FEEDBACK_KINDS)[number];

export const REVIEW_STATUSES = ['pending', 'approved', 'rejected'] as const;
export type ReviewStatus = (typeof REVIEW_STATUSES)[number];

/** user: an API caller; reviewer: someone in the admin UI; rule: an automatic rule (moderation, heuristics). */
export const FEEDBACK_SOURCES = ['user', 'reviewer', 'rule'] as const;
export type FeedbackSource = (typeof FEEDBACK_SOURCES)[number];

export const feedbackSubject = (id: string): string => `${STREAMS.feedback.subjects[0].replace(/>$/, '')}${id}`;

const choiceIndex = z.number().int().min(0).max(127);

/**
 * A ranking's shape: choice indices best first, each once. Whether it orders every choice of its completion needs
 * the completion (rankingProblem).
 */
const rankingValue = z
  .array(choiceIndex)
  .min(2, 'a ranking orders at least two choices')
  .max(128)
  .superRefine((order, ctx) => {
    const seen = new Set<number>();
    for (const [i, index] of order.entries()) {
      if (seen.has(index)) ctx.addIssue({ code: 'custom', message: `choice ${index} is ranked twice; rank each choice once`, path: [i] });
      seen.add(index);
    }
  });

/** Per kind, what `value` holds. A preference names two different choices of one completion (n > 1). */
export const feedbackValueSchemas = {
  thumbs: z.enum(['up', 'down']),
  rating: z.number().int().min(1).max(5),
  preference: z
    .object({ chosen: choiceIndex, rejected: choiceIndex })
    .strict()
    .refine((v) => v.chosen !== v.rejected, { message: 'chosen and rejected must be different choices', path: ['rejected'] }),
  /** The better answer, as the assistant should have written it. */
  correction: z.string().min(1).max(65_536),
  /** A category slug: a moderation category (`self-harm/intent`) or one of ours (`incorrect`, `unhelpful`, `other`). */
  flag: z.string().regex(/^[a-z][a-z0-9_/-]{0,63}$/, 'must be a lower-case category such as "incorrect" or "harassment"'),
  /**
   * Every choice of one completion (n > 1), best first: `[2, 0, 1]` says #2 beats #0 beats #1. Complete rankings
   * only (a permutation of 0 … n−1; rankingProblem checks it against the completion): a partial one leaves the
   * unranked choices' order unknown, and a reviewer who can only name the best records a preference instead.
   */
  ranking: rankingValue,
} as const;

/**
 * Why `order` is not a complete ranking of a completion whose `choiceCount` choices answer `promptCount` prompts,
 * or null when it is one. The message completes "Invalid value for 'value': …".
 */
export function rankingProblem(order: readonly number[], choiceCount: number, promptCount = 1): string | null {
  if (promptCount > 1) return `the completion's choices answer ${promptCount} different prompts; only the choices of one prompt can be ranked`;
  const outside = order.find((index) => index >= choiceCount);
  if (outside !== undefined) {
    return `the completion has ${choiceCount} choice${choiceCount === 1 ? '' : 's'} (0 to ${choiceCount - 1}), got ${outside}`;
  }
  const missing = Array.from({ length: choiceCount }, (_, i) => i).filter((i) => !order.includes(i));
  if (missing.length > 0) {
    return `a ranking orders every choice of the completion (0 to ${choiceCount - 1}, best first); missing ${missing.join(', ')}`;
  }
  return null;
}

const commonBody = {
  completion_id: z.string().min(1).max(128).regex(/^[\w.-]+$/, 'must be a completion id such as "chatcmpl-…"'),
  choice_index: choiceIndex.nullish(),
  comment: z.string().max(8_192).nullish(),
  /** End-user id of the caller's own users (as OpenAI's `user`), recorded as the author. */
  user: z.string().max(256).nullish(),
  /** Same key (per API key) ⇒ same feedback: a retried POST answers the first one and stores nothing new. */
  idempotency_key: z.string().min(1).max(255).nullish(),
};

export const feedbackCreateBodySchema = z.discriminatedUnion('kind', [
  z.object({ ...commonBody, kind: z.literal('thumbs'), value: feedbackValueSchemas.thumbs }).strict(),
  z.object({ ...commonBody, kind: z.literal('rating'), value: feedbackValueSchemas.rating }).strict(),
  z.object({ ...commonBody, kind: z.literal('preference'), value: feedbackValueSchemas.preference }).strict(),
  z.object({ ...commonBody, kind: z.literal('correction'), value: feedbackValueSchemas.correction }).strict(),
  z.object({ ...commonBody, kind: z.literal('flag'), value: feedbackValueSchemas.flag }).strict(),
  z.object({ ...commonBody, kind: z.literal('ranking'), value: feedbackValueSchemas.ranking }).strict(),
]);
export type FeedbackCreateBody = z.infer<typeof feedbackCreateBodySchema>;

export const feedbackListQuerySchema = z
  .object({
    completion_id: commonBody.completion_id,
    limit: z.coerce.number().int().min(1).max(100).default(100),
  })
  .strict();
export type FeedbackListQuery = z.infer<typeof feedbackListQuerySchema>;

/** What the store writer consumes from stream FEEDBACK. camelCase like the completion record. */
export const feedbackEventSchema = z.object({
  id: z.string().min(1),
  completionId: z.string().min(1),
  choiceIndex: z.number().int().nonnegative().nullable(),
  kind: z.enum(FEEDBACK_KINDS),
  /** Checked against `kind` by feedbackValueSchemas when the body was parsed. */
  value: z.unknown(),
  comment: z.string().nullable(),
  author: z.string().nullable(),
  source: z.enum(FEEDBACK_SOURCES),
  /** sha256-derived id of the API key that posted it (never the key). */
  keyId: z.string(),
  idempotencyKey: z.string().nullable(),
  createdAt: z.string(),
  requestId: z.string(),
  gatewayInstanceId: z.string(),
});
export type FeedbackEvent = z.infer<typeof feedbackEventSchema>;

/** The feedback object of the HTTP API. `review_status` is `pending` until a reviewer decides. */
export interface FeedbackObject {
  id: string;
  object: 'feedback';
  completion_id: string;
  choice_index: number | null;
  kind: FeedbackKind;
  value: unknown;
  comment: string | null;
  user: string | null;
  source: FeedbackSource;
  /** Unix seconds. */
  created_at: number;
  review_status: ReviewStatus;
}

export interface FeedbackList {
  object: 'list';
  data: FeedbackObject[];
}

/**
 * The newest millisecond this process made an id for, and that id's 74 random bits (rand_a ‖ rand_b of RFC 9562).
 * A later id of the same millisecond adds to them instead of drawing afresh (RFC 9562 §6.2, method 2).
 */
let lastMs = -1;
/** Those bits as the id's hex digits after the version, read into a number only when the millisecond repeats. */
let lastRandomHex = '';
const RANDOM_BITS = 74n;
const RAND_B_BITS = 62n;

/**
 * A UUIDv7-layout id in 32 hex digits: 48 bits of Unix milliseconds, then random bits. Time-ordered,
 * so ids sort by creation (a btree on them stays append-only) and their age can be read back. Ids this
 * process makes within one millisecond also sort in the order it made them: the second and later add a
 * random step (1 to 2^32) to the one before, so rows stamped with the same millisecond and ordered by
 * (time, id) keep their order of creation rather than falling to the random digits.
 */
export function newTimeOrderedId(nowMs: number = Date.now()): string {
  const ms = Math.floor(nowMs);
  const time = ms.toString(16).padStart(12, '0').slice(-12);
  if (ms === lastMs) {
    const next = randomOfHex(lastRandomHex) + BigInt(randomUint32()) + 1n;
    // Past 2^74 (a chance of about 2^-42 per id) the millisecond's order gives way to a fresh draw.
    if (next < 1n << RANDOM_BITS) {
      lastRandomHex = hexOfRandom(next);
      return `${time}7${lastRandomHex}`;
    }
  }
  const id = freshTimeOrderedId(time);
  // An explicit earlier time (a backfill, a test) leaves the newest millisecond's sequence alone.
  if (ms >= lastMs) {
    lastMs = ms;
    lastRandomHex = id.slice(13);
  }
  return id;
}

/** rand_a (3 hex), then the variant (10) and rand_b: the 19 hex digits after the version. */
function hexOfRandom(r: bigint): string {
  const randA = r >> RAND_B_BITS;
  const randB = r & ((1n << RAND_B_BITS) - 1n);
  const variantNibble = 8 | Number(randB >> 60n);
  return randA.toString(16).padStart(3, '0') + variantNibble.toString(16) + (randB & ((1n << 60n) - 1n)).toString(16).padStart(15, '0');
}

function randomOfHex(hex: string): bigint {
  const randA = BigInt(`0x${hex.slice(0, 3)}`);
  const randB = (BigInt(parseInt(hex[3]!, 16) & 3) << 60n) | BigInt(`0x${hex.slice(4)}`);
  return (randA << RAND_B_BITS) | randB;
}

/** 32 random bits: the last 8 hex digits of a fresh id's rand_b (freshTimeOrderedId picks the random source). */
function randomUint32(): number {
  return parseInt(freshTimeOrderedId('').slice(-8), 16);
}

function freshTimeOrderedId(time: string): string {
  // Web Crypto (Node ≥ 20 and browsers alike): the admin UI imports this lib too. randomUUID draws from Node's
  // cached pool of random bytes (a gateway makes one id per request; getRandomValues costs tens of µs a call
  // there); browsers have it only in secure contexts, so plain http falls back to getRandomValues.
  if (typeof globalThis.crypto.randomUUID === 'function') {
    // xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx (V: the variant, 8–b): its random digits after the time and version 7.
    const r = globalThis.crypto.randomUUID();
    return `${time}7${r.slice(15, 18)}${r.slice(19, 23)}${r.slice(24)}`;
  }
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(10));
  bytes[0] = (bytes[0]! & 0x0f) | 0x70;
  bytes[2] = (bytes[2]! & 0x3f) | 0x80;
  return time + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Creation time (Unix ms) of an id whose last 32 hex digits are a UUIDv7 (`fb-…`, or `chatcmpl-…`
 * when the gateway makes time-ordered ids); null for any other id (a v4 UUID says nothing of its age).
 */
export function timeOfTimeOrderedId(id: string): number | null {
  const m = /([0-9a-f]{32})$/.exec(id);
  const hex = m?.[1];
  if (!hex || hex[12] !== '7' || !/[89ab]/.test(hex[16] ?? '')) return null;
  return parseInt(hex.slice(0, 12), 16);
}
