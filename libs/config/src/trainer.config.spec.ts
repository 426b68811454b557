import { ConfigError } from './config.loader';
import { loadTrainerConfig } from './trainer.config';

describe('trainer config', () => {
  it('defaults to BullMQ\'s own prefix, a 30 s job lock and one thread per core', () => {
    const c = loadTrainerConfig({});
    expect(c.service).toBe('trainer');
    expect(c.trainer).toEqual({ queuePrefix: 'bull', lockMs: 30_000, threads: 0 });
  });

  it('takes a queue prefix of its own (tests share one Redis)', () => {
    expect(loadTrainerConfig({ FLYWHEEL_QUEUE_PREFIX: 'fwtest-1', FLYWHEEL_TRAINER_LOCK_MS: '2000' }).trainer).toMatchObject({ queuePrefix: 'fwtest-1', lockMs: 2000 });
  });

  it.each([
    ['FLYWHEEL_QUEUE_PREFIX', 'a b'],
    ['FLYWHEEL_TRAINER_LOCK_MS', '10'],
    ['FLYWHEEL_TRAINER_THREADS', '-1'],
  ])('refuses %s=%s', (name, value) => {
    expect(() => loadTrainerConfig({ [name]: value })).toThrow(ConfigError);
  });
});
