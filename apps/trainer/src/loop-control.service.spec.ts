/** What a loop run needs before it is queued (loopDataProblem) and where its stages run (stageJobOf). */
import { loopDataProblem } from './loop-control.service';
import { stageJobOf } from './loop.processor';

const pair = (prompt: string) =>
  JSON.stringify({ prompt: [{ role: 'user', content: prompt }], chosen: [{ role: 'assistant', content: 'yes' }], rejected: [{ role: 'assistant', content: 'no' }] });

describe('loopDataProblem', () => {
  it('refuses an empty export', () => {
    expect(loopDataProblem('', 0)).toMatch(/^no approved preference pairs to train on yet/);
  });

  it('refuses pairs on a single prompt: none would be left for the eval gate', () => {
    const content = [pair('Tell me a story.'), pair('Tell me a story.')].join('\n');
    expect(loopDataProblem(content, 2)).toBe(
      'too few approved preference pairs to train on: 2 approved preference pairs on 1 distinct prompt; a loop run needs pairs on at least 2 distinct prompts (one is held out for the eval gate)',
    );
  });

  it('accepts pairs on two distinct prompts', () => {
    expect(loopDataProblem([pair('A story about a cat.'), pair('A story about a dog.')].join('\n'), 2)).toBeNull();
  });
});

describe('stageJobOf', () => {
  it('names the job of each stage run as a job, and none for the loop’s own steps', () => {
    expect(stageJobOf('loop-7-abc', 'reward-train')).toEqual({ queue: 'reward-train', jobId: 'loop-7-abc-rm' });
    expect(stageJobOf('loop-7-abc', 'ppo')).toEqual({ queue: 'ppo', jobId: 'loop-7-abc-ppo' });
    expect(stageJobOf('loop-7-abc', 'eval')).toEqual({ queue: 'eval', jobId: 'loop-7-abc-eval' });
    expect(stageJobOf('loop-7-abc', 'publish-reward')).toBeNull();
    expect(stageJobOf('loop-7-abc', 'toString')).toBeNull();
  });
});
