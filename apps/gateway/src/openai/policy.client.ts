/**
 * The gateway's view of the policy service over NATS: what it serves (policy.info, cached so the hot
 * path makes no extra round trip), a generation as a stream of frames (an `overloaded` refusal retried on
 * another replica), and cancelling one. Not the HTTP mapping of errors (http/openai-error.ts).
 */
import { Inject, Injectable, Logger } from '@nestjs/common';
import {
  generateFrameSchema,
  policyInfoSchema,
  SUBJECTS,
  type GenerateFrame,
  type GenerateRequestInput,
  type PolicyInfo,
} from '@flywheel/contracts';
import type { GatewayConfig } from '@flywheel/config';
import { emitEvent, MeshConnection, MeshError, RECONNECT_RETRY_MS, SERVICE_CONFIG } from '@flywheel/mesh';

/** Served from cache without asking; between FRESH and STALE a refresh runs in the background. */
const FRESH_MS = 2_000;
const STALE_MS = 10_000;

/**
 * A replica whose waiting queue is full refuses before it queues anything, so asking again is safe. The
 * queue group hands each request to a random member: with two replicas and one full, 10 retries miss the
 * free one with p = 2^-11. The jitter (ms, uniform, growing per attempt: ~120 ms in all when every replica
 * is full) spreads the retries of a burst.
 */
export const OVERLOADED_RETRIES = 10;
const RETRY_JITTER_MS = { base: 2, perAttempt: 4 };

@Injectable()
export class PolicyClient {
  private readonly logger = new Logger('PolicyClient');
  private cached: { info: PolicyInfo; at: number } | null = null;
  private refreshing: Promise<PolicyInfo> | null = null;

  constructor(
    private readonly mesh: MeshConnection,
    @Inject(SERVICE_CONFIG) private readonly config: GatewayConfig,
  ) {}

  /** What the policy serves; throws MeshError when no replica answers and the cache is too old. */
  async info(): Promise<PolicyInfo> {
    const age = this.cached ? performance.now() - this.cached.at : Infinity;
    if (this.cached && age < FRESH_MS) return this.cached.info;
    if (this.cached && age < STALE_MS) {
      void this.refresh().catch(() => undefined);
      return this.cached.info;
    }
    return this.refresh();
  }

  /** A start frame saw another version than the cache: a hot swap happened; refetch next time. */
  noteVersion(policyVersion: string): void {
    if (this.cached && this.cached.info.policyVersion !== policyVersion) this.cached = null;
  }

  /**
   * The policy's frames for one request. An `overloaded` refusal as the first answer is retried on the
   * next request up to OVERLOADED_RETRIES times with a small jitter; after that it propagates (HTTP 429 +
   * Retry-After). Any other error, or one after the first frame, propagates at once.
   */
  /** `retryUndeliveredMs`: the request's remaining resend budget while NATS is down (meshRetryBudgetMs). */
  async *generate(request: GenerateRequestInput, signal: AbortSignal, retryUndeliveredMs = RECONNECT_RETRY_MS): AsyncGenerator<GenerateFrame> {
    const timeoutMs = this.config.gateway.api.generateTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      // Resent while it reaches no replica (NATS reconnecting, replicas resubscribing): nothing started yet.
      const frames = this.mesh.client.stream(SUBJECTS.policy.generate, request, generateFrameSchema, {
        firstReplyTimeoutMs: timeoutMs,
        idleTimeoutMs: timeoutMs,
        signal,
        retryUndeliveredMs,
        mux: this.config.gateway.api.streamMux,
      });
      let first: IteratorResult<GenerateFrame>;
      try {
        first = await frames.next();
      } catch (err) {
        if (!isOverloaded(err) || attempt >= OVERLOADED_RETRIES || signal.aborted) throw err;
        await jitter(attempt, signal);
        if (signal.aborted) throw err;
        continue;
      }
      if (first.done) return;
      yield first.value;
      yield* frames;
      return;
    }
  }

  /**
   * An event every policy replica receives; the one running the request frees its sequence at the next
   * step. Fire and forget: a cancel lost to a NATS outage ends at max_tokens instead.
   */
  cancel(requestId: string): void {
    const nc = this.mesh.connection;
    if (!nc || nc.isClosed()) return;
    try {
      emitEvent(nc, SUBJECTS.policy.cancel, { requestId });
    } catch (err) {
      this.logger.warn(`policy.cancel ${requestId} was not sent: ${String(err)}`);
    }
  }

  private refresh(): Promise<PolicyInfo> {
    this.refreshing ??= this.mesh.client
      .request(SUBJECTS.policy.info, {}, policyInfoSchema, { timeoutMs: this.config.nats.requestTimeoutMs, retryUndeliveredMs: RECONNECT_RETRY_MS })
      .then((info) => {
        this.cached = { info, at: performance.now() };
        return info;
      })
      .finally(() => {
        this.refreshing = null;
      });
    return this.refreshing;
  }
}

function isOverloaded(err: unknown): boolean {
  return err instanceof MeshError && err.code === 'overloaded';
}

/** Resolves after the attempt's jitter, or at once when the client goes away. */
function jitter(attempt: number, signal: AbortSignal): Promise<void> {
  const ms = Math.random() * (RETRY_JITTER_MS.base + RETRY_JITTER_MS.perAttempt * attempt);
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
