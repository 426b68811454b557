/**
 * The gateway's view of the policy service over NATS: what it serves (policy.info, cached so the hot
 * path makes no extra round trip), a generation as a stream of frames, and cancelling one.
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
import { emitEvent, MeshConnection, SERVICE_CONFIG } from '@flywheel/mesh';

/** Served from cache without asking; between FRESH and STALE a refresh runs in the background. */
const FRESH_MS = 2_000;
const STALE_MS = 10_000;

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

  generate(request: GenerateRequestInput, signal: AbortSignal): AsyncGenerator<GenerateFrame> {
    const timeoutMs = this.config.gateway.api.generateTimeoutMs;
    return this.mesh.client.stream(SUBJECTS.policy.generate, request, generateFrameSchema, {
      firstReplyTimeoutMs: timeoutMs,
      idleTimeoutMs: timeoutMs,
      signal,
    });
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
      .request(SUBJECTS.policy.info, {}, policyInfoSchema, { timeoutMs: this.config.nats.requestTimeoutMs })
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
