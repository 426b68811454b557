import type { TrainingRunStatus } from '../../../libs/contracts/src/training-runs.schemas';
import { isLiveRun, type LiveLoopRun } from './run-live';

const live: LiveLoopRun = { runId: 'loop-1', stage: 'ppo', startedAt: '2026-12-06T19:00:00.000Z', progress: { step: 5, steps: 20 } };
const run = (id: string, status: TrainingRunStatus, kind = 'loop', parentRunId: string | null = null) => ({ id, kind, status, parentRunId }) as Parameters<typeof isLiveRun>[0];

describe('which run the loop status belongs to', () => {
  it('the running loop and its running stage', () => {
    expect(isLiveRun(run('loop-1', 'running'), live)).toBe(true);
    expect(isLiveRun(run('ppo-1', 'running', 'ppo', 'loop-1'), live)).toBe(true);
    expect(isLiveRun(run('ppo-1', 'queued', 'ppo', 'loop-1'), live)).toBe(true);
  });

  it('not another stage of it, another run, or no live loop', () => {
    expect(isLiveRun(run('rm-1', 'running', 'reward', 'loop-1'), live)).toBe(false);
    expect(isLiveRun(run('loop-2', 'running'), live)).toBe(false);
    expect(isLiveRun(run('loop-1', 'running'), null)).toBe(false);
  });

  it('never a finished run, though a status polled before it finished still names it', () => {
    for (const status of ['succeeded', 'failed', 'cancelled'] as const) {
      expect(isLiveRun(run('loop-1', status), live)).toBe(false);
      expect(isLiveRun(run('ppo-1', status, 'ppo', 'loop-1'), live)).toBe(false);
    }
  });
});
