/**
 * What every training job shares before and after it trains: job data parsed with its schema (invalid data
 * fails for good, naming each field), the version / run id (outName, else kind, job id and creation time; never a
 * name that cannot be a version), the candidate it registers, and how its data source reads.
 */
import { UnrecoverableError } from 'bullmq';
import { sftJobDataSchema } from '@flywheel/contracts';
import { candidateOf, finiteOrNull, jobVersionId, parseJobData, sourceOf } from './queue.processor';

describe('parseJobData', () => {
  it('returns the parsed data with its defaults', () => {
    const data = parseJobData(sftJobDataSchema, { modelDir: '/models/x', steps: 3, lr: 0.001, data: { kind: 'jsonl', path: '/d.jsonl' } }, 'sft');
    expect(data.modelDir).toBe('/models/x');
    expect(data.steps).toBe(3);
    expect(data.batchSize).toBeGreaterThan(0);
  });

  it('fails for good, naming every invalid field', () => {
    let err: unknown;
    try {
      parseJobData(sftJobDataSchema, { modelDir: 3, steps: -1, data: { kind: 'jsonl', path: '/d.jsonl' } }, 'sft');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect((err as Error).message).toMatch(/^invalid sft job data: /);
    expect((err as Error).message).toMatch(/modelDir/);
    expect((err as Error).message).toMatch(/steps/);
  });
});

describe('jobVersionId', () => {
  const job = { id: '42', timestamp: 1_760_000_000_000 };

  it('is the outName when there is one, else <kind>-<job id>-<creation time in base 36>', () => {
    expect(jobVersionId('sft', job, 'my-sft-v2')).toBe('my-sft-v2');
    expect(jobVersionId('sft', job, undefined)).toBe(`sft-42-${job.timestamp.toString(36)}`);
  });

  it('differs for the same job id created at another time (ids restart when Redis is emptied)', () => {
    expect(jobVersionId('dpo', job, undefined)).not.toBe(jobVersionId('dpo', { ...job, timestamp: job.timestamp + 1 }, undefined));
  });

  it('fails for good on a name that cannot be a version', () => {
    expect(() => jobVersionId('sft', job, '../escape')).toThrow(UnrecoverableError);
    expect(() => jobVersionId('sft', job, 'has space')).toThrow(/cannot publish "has space" as a version/);
  });
});

describe('candidateOf', () => {
  const base = { id: 'sft-1-abc', role: 'policy' as const, kind: 'sft' as const, config: { steps: 3 }, startedAt: new Date(0), checkpoint: '/ck', metrics: { loss: 1 } };

  it('names the run and the version alike and keeps the export only for export data', () => {
    const fromExport = candidateOf({ ...base, source: { kind: 'export', exportId: 'exp-1' }, baseVersion: 'base' });
    expect(fromExport).toMatchObject({ versionId: 'sft-1-abc', role: 'policy', checkpoint: '/ck', metrics: { loss: 1 } });
    expect(fromExport.trainingRun).toMatchObject({ id: 'sft-1-abc', kind: 'sft', baseVersion: 'base', exportId: 'exp-1', config: { steps: 3 }, startedAt: new Date(0) });
    expect(fromExport.trainingRun.finishedAt.getTime()).toBeGreaterThanOrEqual(fromExport.trainingRun.startedAt.getTime());
    const fromFile = candidateOf({ ...base, source: { kind: 'jsonl', path: '/d.jsonl' } });
    expect(fromFile.trainingRun).toMatchObject({ exportId: null, baseVersion: null });
  });
});

describe('sourceOf and finiteOrNull', () => {
  it('reads an export by its id and a file by its absolute path', () => {
    expect(sourceOf({ kind: 'export', exportId: 'exp-9' })).toEqual({ source: 'export exp-9', exportIds: ['exp-9'] });
    expect(sourceOf({ kind: 'jsonl', path: 'rel/d.jsonl' })).toEqual({ source: `${process.cwd()}/rel/d.jsonl`, exportIds: [] });
  });

  it('keeps finite numbers and turns NaN and infinities into null (JSON has neither)', () => {
    expect([1.5, 0, -2].map(finiteOrNull)).toEqual([1.5, 0, -2]);
    expect([NaN, Infinity, -Infinity].map(finiteOrNull)).toEqual([null, null, null]);
  });
});
