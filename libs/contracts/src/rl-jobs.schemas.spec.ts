/**
 * A loop start's overrides carry only what the caller sent: the trainer's configured algorithm and switches apply to
 * the rest (a default filled in here would overwrite them), while nested settings still get their defaults and
 * unknown keys are refused. And a PPO config's criticLora keeps its three states (absent, null, options).
 */
import { loopStartRequestSchema, ppoConfigSchema } from './rl-jobs.schemas';

const data = { kind: 'export' as const, exportId: 'exp-1' };

describe('loopStartRequestSchema overrides', () => {
  it('leaves out every field the caller did not send', () => {
    expect(loopStartRequestSchema.parse({ action: 'start', data }).overrides).toEqual({});
    expect(loopStartRequestSchema.parse({ action: 'start', data, overrides: { algorithm: 'grpo' } }).overrides).toEqual({ algorithm: 'grpo' });
  });

  it('fills defaults inside a field that was sent, and refuses unknown fields', () => {
    const { overrides } = loopStartRequestSchema.parse({ action: 'start', data, overrides: { ppo: { steps: 3 } } });
    expect(Object.keys(overrides)).toEqual(['ppo']);
    expect(overrides.ppo).toMatchObject({ steps: 3, rolloutBatch: 64 });
    expect(() => loopStartRequestSchema.parse({ action: 'start', data, overrides: { bogus: 1 } })).toThrow(/bogus/);
  });
});

describe('ppoConfigSchema criticLora', () => {
  it('leaves an absent criticLora absent (the critic follows lora), keeps null (a full critic), and checks an object as lora', () => {
    expect(ppoConfigSchema.parse({ lora: { rank: 4 } }).criticLora).toBeUndefined();
    expect(ppoConfigSchema.parse({ lora: { rank: 4 }, criticLora: null }).criticLora).toBeNull();
    expect(ppoConfigSchema.parse({ criticLora: { rank: 8, targets: ['v_proj'] } }).criticLora).toEqual({ rank: 8, targets: ['v_proj'] });
    expect(() => ppoConfigSchema.parse({ criticLora: { rank: 4, bogus: 1 } })).toThrow(/bogus/);
  });
});
