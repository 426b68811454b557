// A PPO or GRPO run as the candidate it registers: reward and KL from its first and last steps, the job's lineage, and
// a result each job's result schema accepts.
import { grpoJobResultSchema, ppoJobResultSchema } from '@flywheel/contracts';
import { onlineRlCandidate } from './online-rl.candidate';

const job = { modelDir: '/models/base', prompts: { kind: 'export' as const, exportId: 'exp-1' }, baseVersion: 'v3', exportIds: ['exp-1'] };
const target = { jobId: '7', id: 'ppo-7-abc', outDir: '/state/checkpoints/ppo-7-abc' };
const prompts = { train: [[{ role: 'user' as const, content: 'a' }]], heldout: [[{ role: 'user' as const, content: 'b' }]], references: [undefined] };
const run = (history: Array<{ reward_mean: number; kl: number }>) => ({ history, steps: history.length, seconds: 4, resumedFromStep: 0, rewardVersion: 'rm-1' });

describe('onlineRlCandidate', () => {
  it('registers a PPO run with its first and last reward, last KL and the job lineage', () => {
    const c = onlineRlCandidate(job, target, prompts, run([{ reward_mean: 0.1, kl: 0 }, { reward_mean: 0.5, kl: 0.25 }]), { metrics: { kl_coef: 0.04 }, result: {} });
    expect(c.metrics).toEqual({
      kl_coef: 0.04,
      reward_first: 0.1,
      reward_last: 0.5,
      kl_last: 0.25,
      steps: 2,
      seconds: 4,
      reward_version: 'rm-1',
      train_prompts: 1,
      heldout_prompts: 1,
      base_model: '/models/base',
    });
    expect(c).toMatchObject({ role: 'policy', source: job.prompts, baseVersion: 'v3', lineage: { parent: 'v3', exports: ['exp-1'] } });
    expect(c.summary).toBe('reward 0.100 → 0.500, KL 0.250; published candidate policy ppo-7-abc');
    expect(ppoJobResultSchema.parse(c.result)).toEqual({
      versionId: 'ppo-7-abc',
      trainingRunId: 'ppo-7-abc',
      checkpointDir: '/state/checkpoints/ppo-7-abc',
      steps: 2,
      resumedFromStep: 0,
      rewardFirst: 0.1,
      rewardLast: 0.5,
      klLast: 0.25,
      heldoutPrompts: prompts.heldout,
    });
  });

  it("adds a GRPO job's algorithm to its metrics, result and summary; a run of no steps has no rewards", () => {
    const c = onlineRlCandidate(job, target, prompts, run([]), { metrics: { algorithm: 'rloo' }, result: { algorithm: 'rloo' as const }, label: 'rloo' });
    expect(c.summary).toBe('rloo: reward - → -, KL -; published candidate policy ppo-7-abc');
    expect(grpoJobResultSchema.parse(c.result)).toMatchObject({ algorithm: 'rloo', rewardFirst: null, rewardLast: null, klLast: null });
    expect(c.metrics).toMatchObject({ algorithm: 'rloo', reward_first: null, kl_last: null });
  });
});
