/**
 * Moderation as the gateway applies it: POST /v1/moderations (the service's answer, as is), the prompt
 * check before generation (moderation.check over NATS; the in-process moderator when no service
 * answers, so a prompt is never let through unchecked, and while it is known down), and one OutputGate
 * per choice for the streamed output check, which always runs in-process. Counts the verdicts it acts on.
 */
import { Inject, Injectable, Logger } from '@nestjs/common';
import type { GatewayConfig } from '@flywheel/config';
import {
  moderationRequestSchema,
  type CompletionModeration,
  type ModerationDirection,
  type ModerationResponse,
  type ModerationVerdictSummary,
} from '@flywheel/contracts';
import { MeshError, RECONNECT_RETRY_MS, SERVICE_CONFIG } from '@flywheel/mesh';
import { ServedModerator, StreamModerator, type ModeratorSource } from '@flywheel/moderation';
import { fromZodError } from '../http/openai-error';
import { meshRetryBudgetMs, type RequestContext } from '../http/request-context';
import { GatewayMetrics } from '../observability/gateway.metrics';
import type { GenerationPlan } from '../openai/openai-request.mapping';
import { ModerationClient, moderationServiceError } from './moderation.client';
import { OutputGate } from './output-gate';
import { ContentPolicyError, promptBatchesOf, promptTextsOf, type PromptPiece } from './prompt-moderation';
import { mergeVerdicts, type VerdictParts } from './verdict-summary';

export type InputModeration = NonNullable<CompletionModeration['input']>;

/**
 * While the service is known not to answer, prompts are checked in-process without asking it, and it is asked again
 * (one request's check, the probe) at most this often: a hung service would otherwise cost every prompt the check's
 * whole timeout, and a stopped one a NATS round trip and two error objects.
 */
export const MODERATION_PROBE_EVERY_MS = 1_000;

@Injectable()
export class GatewayModeration {
  private readonly logger = new Logger('GatewayModeration');
  private serviceDown = false;
  /** When the service was last asked or last failed while down (performance.now()). */
  private probedAt = -Infinity;

  constructor(
    private readonly client: ModerationClient,
    /** The in-process moderator: the configured one, or the promoted moderation version. */
    @Inject(ServedModerator) private readonly moderators: ModeratorSource,
    private readonly metrics: GatewayMetrics,
    @Inject(SERVICE_CONFIG) private readonly config: GatewayConfig,
  ) {
    const outputLatency = metrics.moderationLatency.labels({ direction: 'output' });
    this.observeOutput = (seconds) => outputLatency.observe(seconds);
  }

  /** The output check's latency series, its label bound once: it is observed on every streamed delta. */
  private readonly observeOutput: (seconds: number) => void;

  /** POST /v1/moderations: OpenAI's request, the service's answer (503/504 when it cannot give one). */
  async moderations(body: unknown): Promise<ModerationResponse> {
    const parsed = moderationRequestSchema.safeParse(body);
    if (!parsed.success) throw fromZodError(parsed.error, body);
    try {
      return await this.client.check(parsed.data);
    } catch (err) {
      throw moderationServiceError(err);
    }
  }

  /**
   * Checks every text of the prompt; throws ContentPolicyError (400) when the policy blocks it.
   * null when the request has no text to check (token-id prompts).
   */
  async checkPrompt(plan: GenerationPlan, ctx: RequestContext): Promise<InputModeration | null> {
    const batches = promptBatchesOf(promptTextsOf(plan));
    if (batches.length === 0) return null;
    const started = performance.now();
    const checked = await this.checkPieces(batches, meshRetryBudgetMs(ctx));
    const summary = mergeVerdicts(checked.verdicts);
    this.metrics.moderationLatency.observe({ direction: 'input' }, (performance.now() - started) / 1000);
    this.count('input', summary, checked.source);
    ctx.log.moderation = summary.action;
    if (summary.action === 'block') throw new ContentPolicyError(plan.promptParam, summary.blockedCategories);
    return { ...summary, model: checked.model, source: checked.source };
  }

  /** A fresh stream check for one choice's output. */
  outputGate(): OutputGate {
    const stream = new StreamModerator(this.moderators.current, { direction: 'output', ...this.config.gateway.moderation.stream });
    return new OutputGate(stream, this.observeOutput);
  }

  /** Counts a finished choice's output verdict (once per choice). */
  countOutput(gate: OutputGate): void {
    this.count('output', gate.summary(), 'local');
  }

  private async checkPieces(batches: PromptPiece[][], budgetMs = RECONNECT_RETRY_MS): Promise<{ verdicts: Array<VerdictParts & PromptPiece>; model: string; source: 'service' | 'local' }> {
    if (this.serviceDown) {
      if (performance.now() - this.probedAt < MODERATION_PROBE_EVERY_MS) return this.checkLocally(batches);
      this.probedAt = performance.now();
    }
    try {
      // Known down: this is the probe, not resent (that would slow the prompt by it).
      const retryMs = this.serviceDown ? 0 : budgetMs;
      const answers = await Promise.all(batches.map((batch) => this.client.check({ input: batch.map((p) => p.value), direction: 'input' }, retryMs)));
      this.noteService(null);
      const verdicts = batches.flatMap((batch, b) =>
        batch.map((piece, i) => ({ ...piece, result: answers[b]!.results[i]!, flywheel: answers[b]!.flywheel_results[i]! })),
      );
      return { verdicts, model: answers[0]!.model, source: 'service' };
    } catch (err) {
      if (!(err instanceof MeshError)) throw err;
      this.noteService(err);
      return this.checkLocally(batches);
    }
  }

  private checkLocally(batches: PromptPiece[][]): { verdicts: Array<VerdictParts & PromptPiece>; model: string; source: 'local' } {
    const moderator = this.moderators.current;
    const verdicts = batches.flat().map((piece) => ({ ...piece, ...moderator.check(piece.value, 'input') }));
    return { verdicts, model: moderator.modelId, source: 'local' };
  }

  /** Logs the service going away and coming back, not every request in between. */
  private noteService(err: MeshError | null): void {
    if (err && !this.serviceDown) this.logger.warn(`moderation service not answering (${err.message}); prompts are checked in-process, and it is asked again once a second, until it does`);
    if (!err && this.serviceDown) this.logger.log('moderation service answering again');
    this.serviceDown = err !== null;
    if (err) this.probedAt = performance.now();
  }

  private count(direction: ModerationDirection, summary: ModerationVerdictSummary, source: 'service' | 'local'): void {
    this.metrics.moderationChecks.inc({ direction, action: summary.action, source });
    for (const category of summary.blockedCategories) this.metrics.moderationFlags.inc({ category, direction, action: 'block' });
    for (const category of summary.flaggedCategories) this.metrics.moderationFlags.inc({ category, direction, action: 'flag' });
  }
}
