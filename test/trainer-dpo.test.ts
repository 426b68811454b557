/**
 * The trainer's `dpo` processor without Redis: a plain job object on the synthetic preference set
 * (test/reward.support.ts) runs DPO on stories260K, reports progress every step, writes a loadable causal-LM
 * checkpoint and registers a candidate policy version (training run kind `dpo`) with its held-out implied-reward
 * accuracy in an embedded store; invalid job data fails without retry. The BullMQ wiring is the same as the sft job's.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UnrecoverableError } from 'bullmq';
import { dpoJobProgressSchema, dpoJobResultSchema, type DpoJobDataInput, type DpoJobProgress } from '@flywheel/contracts';
import { loadTrainerConfig } from '@flywheel/config';
import { loadCheckpoint } from '@flywheel/model';
import { findModelVersion, getTrainingRunDetail, openStore } from '@flywheel/store';
import { DpoProcessor } from '../apps/trainer/src/dpo.processor';
import { TrainerStore } from '../apps/trainer/src/trainer.store';
import { syntheticPreferences, toJsonl } from './reward.support';
import { repoRoot } from './support/processes';

jest.setTimeout(90_000);

describe('dpo job', () => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-dpo-job-'));
  const config = loadTrainerConfig({ FLYWHEEL_STATE_DIR: stateDir, FLYWHEEL_TRAINER_THREADS: '1' });
  const processor = new DpoProcessor(config, new TrainerStore(config));

  afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

  it('trains, reports progress, writes the checkpoint and registers a candidate policy with its held-out accuracy', async () => {
    const data = path.join(stateDir, 'prefs.jsonl');
    writeFileSync(data, toJsonl(syntheticPreferences(60)));
    const progress: DpoJobProgress[] = [];
    const jobData: DpoJobDataInput = { modelDir: path.join(repoRoot, 'models/stories260K'), data: { kind: 'jsonl', path: data }, steps: 20, seed: 2, heldout: 0.25 };
    const result = dpoJobResultSchema.parse(
      await processor.process({ id: 'j1', data: jobData, updateProgress: async (p) => void progress.push(dpoJobProgressSchema.parse(p)) }),
    );
    expect(progress.map((p) => p.step)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(result).toMatchObject({ versionId: 'dpo-j1', trainingRunId: 'dpo-j1', pairs: 60, heldoutPairs: 15, steps: 20, resumedFromStep: 0 });
    expect(result.checkpointDir).toBe(path.join(stateDir, 'checkpoints', 'dpo-j1'));
    expect(result.heldoutAccuracyBefore).toBe(0.5);
    expect(result.heldoutAccuracy).toBeGreaterThanOrEqual(0.85);
    expect(result.heldoutMarginAfter).toBeGreaterThan(0);
    expect(result.lossLast).toBeLessThan(result.lossFirst!);

    const ck = await loadCheckpoint(result.checkpointDir);
    expect(ck.numLabels).toBeNull();
    const store = await openStore({ kind: 'pglite', dataDir: path.join(stateDir, 'store') });
    try {
      const row = await findModelVersion(store.db, 'dpo-j1');
      expect(row).toMatchObject({ role: 'policy', status: 'candidate', checkpoint: result.checkpointDir, training_run_id: 'dpo-j1' });
      expect(row?.metrics).toMatchObject({ heldout_accuracy: result.heldoutAccuracy, heldout_accuracy_before: 0.5, pairs: 60, beta: 0.1 });
      const run = await store.db.selectFrom('training_runs').select(['kind', 'status']).where('id', '=', 'dpo-j1').executeTakeFirst();
      expect(run).toEqual({ kind: 'dpo', status: 'succeeded' });
      // Every step is in the run's series (the admin UI's curves), loss falling.
      const series = (await getTrainingRunDetail(store.db, 'dpo-j1'))?.series ?? [];
      expect(series.map((p) => p.step)).toEqual(Array.from({ length: series.length }, (_, i) => i + 1));
      expect(series.length).toBeGreaterThan(1);
      expect(series[series.length - 1].metrics.loss!).toBeLessThan(series[0].metrics.loss!);
      expect(series[0].metrics).toHaveProperty('margin');
    } finally {
      await store.close();
    }
  });

  it('fails invalid job data without retry', async () => {
    const bad = { modelDir: 'm', data: { kind: 'jsonl', path: 'p' }, labelSmoothing: 0.5 };
    await expect(processor.process({ id: 'bad', data: bad, updateProgress: async () => undefined })).rejects.toBeInstanceOf(UnrecoverableError);
  });
});
