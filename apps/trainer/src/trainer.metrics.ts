/**
 * The trainer's Prometheus metrics beside the shared service ones: the last PPO step's reward, KL and clip
 * fraction (the dashboard's training panels and the PPO-KL alert read these), and eval verdicts. Provided once
 * per process on the service registry.
 */
import { Inject, Injectable } from '@nestjs/common';
import { Counter, Gauge } from 'prom-client';
import { SERVICE_METRICS, type ServiceMetrics } from '@flywheel/mesh';
import type { PpoStepMetrics } from '@flywheel/contracts';

@Injectable()
export class TrainerMetrics {
  readonly ppoRewardMean: Gauge;
  readonly ppoKl: Gauge;
  readonly ppoClipFraction: Gauge;
  readonly ppoSteps: Counter;
  readonly evalVerdicts: Counter<'verdict'>;

  constructor(@Inject(SERVICE_METRICS) metrics: ServiceMetrics) {
    const registers = [metrics.registry];
    this.ppoRewardMean = new Gauge({ name: 'flywheel_ppo_reward_mean', help: 'Mean reward-model score of the last PPO step', registers });
    this.ppoKl = new Gauge({ name: 'flywheel_ppo_kl', help: 'KL to the reference policy of the last PPO step (nats per sequence)', registers });
    this.ppoClipFraction = new Gauge({ name: 'flywheel_ppo_clip_fraction', help: 'Fraction of clipped probability ratios in the last PPO step', registers });
    this.ppoSteps = new Counter({ name: 'flywheel_ppo_steps_total', help: 'PPO steps completed', registers });
    this.evalVerdicts = new Counter({ name: 'flywheel_eval_verdicts_total', help: 'Eval gate verdicts (promote, reject)', labelNames: ['verdict'], registers });
  }

  ppoStep(m: PpoStepMetrics): void {
    this.ppoRewardMean.set(m.reward_mean);
    this.ppoKl.set(m.kl);
    this.ppoClipFraction.set(m.clip_fraction);
    this.ppoSteps.inc();
  }
}
