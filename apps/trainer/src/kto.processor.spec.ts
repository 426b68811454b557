/**
 * The `kto` job's wire shapes as its worker sees them: job data parsed with KTO_DEFAULTS (a batch of one fails for
 * good, naming the field: the KL reference point needs another example's completion), and step progress with a
 * reward of a kind the batch lacked sent as null, valid against ktoJobProgressSchema. The training itself is
 * libs/rl/src/kto.trainer.spec.ts; registering and publishing are TrainingJobProcessor's, as for every job.
 */
import { UnrecoverableError } from 'bullmq';
import { KTO_DEFAULTS, ktoJobDataSchema, ktoJobProgressSchema, QUEUES } from '@flywheel/contracts';
import { ktoJobProgressOf } from './kto.processor';
import { parseJobData } from './queue.processor';

describe('kto job data', () => {
  it('takes KTO_DEFAULTS for what the job leaves out', () => {
    const data = parseJobData(ktoJobDataSchema, { modelDir: '/models/x', data: { kind: 'export', exportId: 'exp-1' } }, QUEUES.kto);
    expect(data).toMatchObject({
      steps: KTO_DEFAULTS.steps,
      lr: KTO_DEFAULTS.lr,
      beta: 0.1,
      desirableWeight: 1,
      undesirableWeight: 1,
      batchSize: KTO_DEFAULTS.batchSize,
      heldout: KTO_DEFAULTS.heldout,
      checkpointEvery: 50,
    });
  });

  it('fails for good on a batch of one or a non-positive weight, naming the fields', () => {
    const bad = { modelDir: '/m', data: { kind: 'jsonl', path: '/k.jsonl' }, batchSize: 1, undesirableWeight: 0 };
    expect(() => parseJobData(ktoJobDataSchema, bad, QUEUES.kto)).toThrow(UnrecoverableError);
    expect(() => parseJobData(ktoJobDataSchema, bad, QUEUES.kto)).toThrow(/^invalid kto job data: (?=.*batchSize Too small: expected number to be >=2)(?=.*undesirableWeight)/);
  });
});

describe('ktoJobProgressOf', () => {
  it('sends a reward of a kind the batch lacked as null', () => {
    const p = { step: 3, steps: 10, loss: 0.4, kl: 0, chosenReward: 0.2, rejectedReward: NaN, margin: NaN, desirable: 8, undesirable: 0, gradNorm: 0.5, lr: 1e-5 };
    const wire = ktoJobProgressOf(p);
    expect(wire).toEqual({ ...p, rejectedReward: null, margin: null });
    expect(ktoJobProgressSchema.parse(JSON.parse(JSON.stringify(wire)))).toEqual(wire);
  });
});
