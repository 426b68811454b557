/**
 * moderation.check's work: moderate each text of a parsed request with the shared Moderator and record
 * metrics per text. No Nest types besides the decorator, so specs build it with `new`.
 */
import { Injectable } from '@nestjs/common';
import {
  type ModerationInfo,
  type ModerationResponse,
  type ParsedModerationRequest,
} from '@flywheel/contracts';
import type { ModeratorSource } from '@flywheel/moderation';
import { randomUUID } from 'node:crypto';
import { ModerationMetrics } from './moderation.metrics';

@Injectable()
export class ModerationService {
  constructor(
    /** The served moderator: a promoted version swaps in between two requests. */
    private readonly moderators: ModeratorSource,
    private readonly metrics: ModerationMetrics,
    private readonly clock: () => bigint = process.hrtime.bigint,
  ) {}

  check(request: ParsedModerationRequest): ModerationResponse {
    const inputs = typeof request.input === 'string' ? [request.input] : request.input;
    // One moderator for the whole request, even if a swap lands meanwhile.
    const moderator = this.moderators.current;
    const verdicts = inputs.map((text) => {
      const started = this.clock();
      const verdict = moderator.check(text, request.direction);
      const seconds = Number(this.clock() - started) / 1e9;
      this.metrics.record(request.direction, verdict.decision.action, verdict.decision.blocked, verdict.decision.flagged, seconds);
      return verdict;
    });
    return {
      id: `modr-${randomUUID().replace(/-/g, '')}`,
      model: moderator.modelId,
      results: verdicts.map((v) => v.result),
      flywheel_results: verdicts.map((v) => v.flywheel),
    };
  }

  info(): ModerationInfo {
    const moderator = this.moderators.current;
    const { meta } = moderator.classifier;
    return {
      model: moderator.modelId,
      classifier: { buckets: meta.buckets, heads: [...meta.heads], trainedOn: meta.trainedOn, seed: meta.seed },
      lexicon: { version: moderator.lexicon.version, rules: moderator.lexicon.ruleCount },
      policy: { name: moderator.policy.name },
    };
  }
}
