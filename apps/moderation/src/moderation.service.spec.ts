import { Registry } from 'prom-client';
import { moderationRequestSchema } from '@flywheel/contracts';
import { loadModerator } from '@flywheel/moderation';
import { ModerationMetrics } from './moderation.metrics';
import { ModerationService } from './moderation.service';

describe('ModerationService', () => {
  const moderator = loadModerator();

  it('moderates each input and records checks, category hits and latency per text', async () => {
    const registry = new Registry();
    let t = 0n;
    const service = new ModerationService({ current: moderator }, new ModerationMetrics(registry), () => (t += 1_500_000n));
    const res = service.check(moderationRequestSchema.parse({ input: ['nice weather today', 'I will kill you'] }));
    expect(res.results.map((r) => r.flagged)).toEqual([false, true]);
    expect(res.model).toBe(moderator.modelId);
    const text = await registry.metrics();
    expect(text).toContain('flywheel_moderation_checks_total{direction="input",action="allow"} 1');
    expect(text).toContain('flywheel_moderation_checks_total{direction="input",action="block"} 1');
    expect(text).toContain('flywheel_moderation_flags_total{category="harassment/threatening",direction="input",action="block"} 1');
    expect(text).toContain('flywheel_moderation_check_duration_seconds_count{direction="input"} 2');
    expect(text).toContain('flywheel_moderation_check_duration_seconds_bucket{le="0.002",direction="input"} 2');
  });

  it('describes the loaded model, lexicon and policy', () => {
    const info = new ModerationService({ current: moderator }, new ModerationMetrics(new Registry())).info();
    expect(info.classifier.heads).toContain('prompt_injection');
    expect(info.lexicon.rules).toBeGreaterThan(10);
    expect(info.policy.name).toBe('default');
  });
});
