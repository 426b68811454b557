/**
 * Moderation metrics on the service's registry: checks by direction and action, category hits by
 * category, direction and action, and check latency. One instance per process (Nest provider).
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { AnyModerationCategory, ModerationAction, ModerationDirection } from '@flywheel/contracts';

export class ModerationMetrics {
  private readonly checks: Counter<'direction' | 'action'>;
  private readonly flags: Counter<'category' | 'direction' | 'action'>;
  private readonly latency: Histogram<'direction'>;

  constructor(registry: Registry) {
    this.checks = new Counter({
      name: 'flywheel_moderation_checks_total',
      help: 'Texts moderated, by direction (input/output) and resulting action (allow/flag/block)',
      labelNames: ['direction', 'action'],
      registers: [registry],
    });
    this.flags = new Counter({
      name: 'flywheel_moderation_flags_total',
      help: 'Category hits: texts whose score reached the policy threshold, by category, direction and action',
      labelNames: ['category', 'direction', 'action'],
      registers: [registry],
    });
    this.latency = new Histogram({
      name: 'flywheel_moderation_check_duration_seconds',
      help: 'Time to moderate one text in-process (rules, PII, classifier, policy), seconds',
      labelNames: ['direction'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1],
      registers: [registry],
    });
  }

  record(
    direction: ModerationDirection,
    action: ModerationAction,
    blocked: readonly AnyModerationCategory[],
    flagged: readonly AnyModerationCategory[],
    seconds: number,
  ): void {
    this.checks.inc({ direction, action });
    for (const category of blocked) this.flags.inc({ category, direction, action: 'block' });
    for (const category of flagged) this.flags.inc({ category, direction, action: 'flag' });
    this.latency.observe({ direction }, seconds);
  }
}
