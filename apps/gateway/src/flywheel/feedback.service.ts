/**
 * The feedback API's logic: validate a body, decide whether its completion exists (in JetStream, in the
 * store, or possibly still streaming), publish the event to JetStream and answer only once it is held
 * there; list feedback from the store. Every side effect sits behind FlywheelJetStream and StoreHandle,
 * so this is tested with plain fakes. HTTP-free apart from the OpenAI-shaped errors it throws; a store it cannot
 * ask is StoreUnavailableError, which the exception filter answers with 503.
 */
import { createHash } from 'node:crypto';
import {
  feedbackCreateBodySchema,
  feedbackListQuerySchema,
  newTimeOrderedId,
  rankingProblem,
  timeOfTimeOrderedId,
  type FeedbackCreateBody,
  type FeedbackEvent,
  type FeedbackList,
  type FeedbackObject,
} from '@flywheel/contracts';
import { MeshError } from '@flywheel/mesh';
import { findCompletionRef, listFeedbackOfCompletion, type StoredFeedback } from '@flywheel/store';
import { fromZodError, OpenAiError } from '../http/openai-error';
import type { FlywheelJetStream } from './flywheel.jetstream';
import type { FlywheelMetrics } from './flywheel.metrics';
import { StoreUnavailableError } from '../store/store.errors';
import type { StoreHandle } from '../store/store.handle';

export interface FeedbackCaller {
  keyId: string;
  requestId: string;
  gatewayInstanceId: string;
}

export interface FeedbackServiceOptions {
  inflightWindowMs: number;
  now?: () => number;
}

/** What is known of the completion a feedback names. */
type CompletionLookup = { kind: 'known'; keyId: string; choiceCount: number; promptCount: number } | { kind: 'inflight' } | { kind: 'missing' } | { kind: 'unknowable'; why: string };

export interface CreatedFeedback {
  feedback: FeedbackObject;
  /** The idempotency key matched earlier feedback: this is that feedback, nothing new was stored. */
  replayed: boolean;
}

const notFound = (id: string) =>
  new OpenAiError(404, 'invalid_request_error', `No completion found with id '${id}'.`, 'completion_id', 'completion_not_found');

/** Same API key + same idempotency key ⇒ same feedback id, in any gateway replica, at any time. */
export function feedbackIdOf(keyId: string, idempotencyKey: string | null | undefined): string {
  if (!idempotencyKey) return `fb-${newTimeOrderedId()}`;
  return `fb-${createHash('sha256').update(`${keyId}\u0000${idempotencyKey}`).digest('hex').slice(0, 32)}`;
}

export function feedbackObjectOf(f: Pick<FeedbackEvent, 'id' | 'completionId' | 'choiceIndex' | 'kind' | 'value' | 'comment' | 'author' | 'source'> & {
  createdAt: string | Date;
  reviewStatus?: FeedbackObject['review_status'];
}): FeedbackObject {
  return {
    id: f.id,
    object: 'feedback',
    completion_id: f.completionId,
    choice_index: f.choiceIndex,
    kind: f.kind,
    value: f.value,
    comment: f.comment,
    user: f.author,
    source: f.source,
    created_at: Math.floor(new Date(f.createdAt).getTime() / 1000),
    review_status: f.reviewStatus ?? 'pending',
  };
}

export class FeedbackService {
  private readonly now: () => number;

  constructor(
    private readonly jetstream: FlywheelJetStream,
    private readonly store: StoreHandle,
    private readonly metrics: FlywheelMetrics,
    private readonly options: FeedbackServiceOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  async create(body: unknown, caller: FeedbackCaller): Promise<CreatedFeedback> {
    const parsed = feedbackCreateBodySchema.safeParse(body);
    if (!parsed.success) throw fromZodError(parsed.error, body);
    const req = parsed.data;
    const id = feedbackIdOf(caller.keyId, req.idempotency_key);

    if (req.idempotency_key) {
      const earlier = await this.earlier(id);
      if (earlier) return { feedback: earlier, replayed: true };
    }

    const completion = await this.lookUpCompletion(req.completion_id);
    if (completion.kind === 'missing') throw notFound(req.completion_id);
    if (completion.kind === 'unknowable') throw new StoreUnavailableError(completion.why);
    if (completion.kind === 'known') {
      // Feedback on another key's completion reads as "no such completion": ids are not a way to probe.
      if (completion.keyId !== caller.keyId) throw notFound(req.completion_id);
      checkChoices(req, completion.choiceCount, completion.promptCount);
    }

    const event: FeedbackEvent = {
      id,
      completionId: req.completion_id,
      choiceIndex: req.choice_index ?? null,
      kind: req.kind,
      value: req.value,
      comment: req.comment ?? null,
      author: req.user ?? null,
      source: 'user',
      keyId: caller.keyId,
      idempotencyKey: req.idempotency_key ?? null,
      createdAt: new Date(this.now()).toISOString(),
      requestId: caller.requestId,
      gatewayInstanceId: caller.gatewayInstanceId,
    };
    const { duplicate } = await this.publish(event);
    if (duplicate) {
      // A concurrent retry with the same idempotency key won the race: answer what it stored.
      const stored = await this.earlier(id);
      if (stored) return { feedback: stored, replayed: true };
    }
    this.metrics.feedbackAccepted.inc({ kind: event.kind, completion: completion.kind });
    return { feedback: feedbackObjectOf(event), replayed: false };
  }

  async list(query: unknown, caller: Pick<FeedbackCaller, 'keyId'>): Promise<FeedbackList> {
    const parsed = feedbackListQuerySchema.safeParse(query);
    if (!parsed.success) throw fromZodError(parsed.error, query);
    const store = this.store.get();
    let rows: StoredFeedback[];
    try {
      rows = await listFeedbackOfCompletion(store.db, parsed.data.completion_id, caller.keyId, parsed.data.limit);
    } catch (err) {
      throw new StoreUnavailableError(errorText(err));
    }
    return { object: 'list', data: rows.map((r) => feedbackObjectOf(r)) };
  }

  /** Feedback already held under this id: in JetStream, else (older than the stream keeps) in the store. */
  private async earlier(id: string): Promise<FeedbackObject | null> {
    const event = await this.jetstreamCall(() => this.jetstream.findFeedbackEvent(id));
    if (event) return feedbackObjectOf(event);
    try {
      const row = await this.store.get()
        .db.selectFrom('feedback')
        .select(['id', 'completion_id', 'choice_index', 'kind', 'value', 'comment', 'author', 'source', 'created_at', 'review_status'])
        .where('id', '=', id)
        .executeTakeFirst();
      if (!row) return null;
      return feedbackObjectOf({
        id: row.id,
        completionId: row.completion_id,
        choiceIndex: row.choice_index,
        kind: row.kind,
        value: row.value,
        comment: row.comment,
        author: row.author,
        source: row.source,
        createdAt: row.created_at,
        reviewStatus: row.review_status,
      });
    } catch {
      // JetStream keeps every record unless an operator limits the stream; without the store, trust it.
      return null;
    }
  }

  private async lookUpCompletion(id: string): Promise<CompletionLookup> {
    const record = await this.jetstreamCall(() => this.jetstream.findCompletionRecord(id));
    if (record) return { kind: 'known', keyId: record.keyId, choiceCount: record.choices.length, promptCount: new Set(record.choices.map((c) => c.promptIndex)).size };
    let storeProblem: string | null = null;
    try {
      const ref = await findCompletionRef(this.store.get().db, id);
      if (ref) return { kind: 'known', keyId: ref.keyId, choiceCount: ref.choiceCount, promptCount: ref.promptCount };
    } catch (err) {
      storeProblem = errorText(err);
    }
    const createdAt = timeOfTimeOrderedId(id);
    if (createdAt !== null && this.now() - createdAt <= this.options.inflightWindowMs) return { kind: 'inflight' };
    return storeProblem === null ? { kind: 'missing' } : { kind: 'unknowable', why: storeProblem };
  }

  private async publish(event: FeedbackEvent): Promise<{ duplicate: boolean }> {
    return this.jetstreamCall(() => this.jetstream.publishFeedback(event));
  }

  private async jetstreamCall<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if (err instanceof MeshError) {
        throw new OpenAiError(503, 'server_error', `Feedback cannot be recorded right now: ${err.message}.`, null, 'service_unavailable', {
          'retry-after': '1',
        });
      }
      throw err;
    }
  }
}

/**
 * choice_index and a preference's choices must exist on the completion (n choices: 0 … n-1); a ranking must order
 * every one of them (rankingProblem).
 */
function checkChoices(req: FeedbackCreateBody, choiceCount: number, promptCount: number): void {
  const check = (index: number | null | undefined, param: string) => {
    if (index !== null && index !== undefined && index >= choiceCount) {
      throw OpenAiError.invalid(
        `Invalid value for '${param}': the completion has ${choiceCount} choice${choiceCount === 1 ? '' : 's'} (0 to ${choiceCount - 1}), got ${index}.`,
        param,
        'invalid_value',
      );
    }
  };
  check(req.choice_index, 'choice_index');
  if (req.kind === 'preference') {
    check(req.value.chosen, 'value.chosen');
    check(req.value.rejected, 'value.rejected');
  }
  if (req.kind === 'ranking') {
    const problem = rankingProblem(req.value, choiceCount, promptCount);
    if (problem) throw OpenAiError.invalid(`Invalid value for 'value': ${problem}.`, 'value', 'invalid_value');
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
