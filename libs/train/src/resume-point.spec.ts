import { checkpointAfterStep, TrainingStoppedError } from './resume-point';
import { SftStoppedError } from './sft.trainer';

/** `steps` steps through checkpointAfterStep: the steps saved after, those told to onCheckpoint, where it stopped. */
async function run(steps: number, every: number, stopAfter: number | null) {
  const saved: number[] = [];
  const told: number[] = [];
  let polled = 0;
  for (let done = 1; done <= steps; done++) {
    const hooks = { shouldStop: () => (polled++, stopAfter !== null && done >= stopAfter), onCheckpoint: (s: number) => void told.push(s) };
    if (await checkpointAfterStep(done, steps, every, hooks, async () => void saved.push(done))) return { saved, told, stoppedAt: done, polled };
  }
  return { saved, told, stoppedAt: null, polled };
}

describe('checkpointAfterStep', () => {
  it('saves every `every` steps but never after the last (the run end saves that), and tells onCheckpoint each', async () => {
    expect(await run(7, 3, null)).toEqual({ saved: [3, 6], told: [3, 6], stoppedAt: null, polled: 6 });
    expect(await run(6, 3, null)).toEqual({ saved: [3], told: [3], stoppedAt: null, polled: 5 });
    expect(await run(4, 0, null)).toEqual({ saved: [], told: [], stoppedAt: null, polled: 3 });
  });

  it('saves and says stop when asked to, off the checkpoint rhythm too; the last step is not polled', async () => {
    expect(await run(10, 4, 2)).toEqual({ saved: [2], told: [2], stoppedAt: 2, polled: 2 });
    expect(await run(10, 0, 5)).toEqual({ saved: [5], told: [5], stoppedAt: 5, polled: 5 });
    // Asked to stop only once the last step is done: the run ends normally instead.
    expect(await run(3, 0, 3)).toEqual({ saved: [], told: [], stoppedAt: null, polled: 2 });
  });
});

describe('TrainingStoppedError', () => {
  it("is each trainer's stop error (what the trainer service catches at shutdown), named and worded by its subclass", () => {
    const e = new SftStoppedError(7);
    expect(e).toBeInstanceOf(TrainingStoppedError);
    expect([e.name, e.step, e.message]).toEqual(['SftStoppedError', 7, 'SFT stopped at step 7 (checkpoint saved)']);
  });
});
