import { loadRewardConfig } from './reward.config';

describe('reward config', () => {
  it('has no reward model by default (blank counts as unset)', () => {
    expect(loadRewardConfig({}).reward).toEqual({ model: null, version: 'rm-base', threads: 0, functionsDir: null });
    expect(loadRewardConfig({ FLYWHEEL_REWARD_MODEL: '  ' }).reward.model).toBeNull();
  });

  it('reads the model, version and threads', () => {
    const c = loadRewardConfig({ FLYWHEEL_REWARD_MODEL: '/ck/rm', FLYWHEEL_REWARD_VERSION: 'rm-7', FLYWHEEL_REWARD_THREADS: '2' });
    expect(c.service).toBe('reward');
    expect(c.reward).toEqual({ model: '/ck/rm', version: 'rm-7', threads: 2, functionsDir: null });
  });

  it('rejects a bad thread count', () => {
    expect(() => loadRewardConfig({ FLYWHEEL_REWARD_THREADS: 'many' })).toThrow(/FLYWHEEL_REWARD_THREADS/);
  });
});
