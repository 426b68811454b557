/**
 * The trainer's `reward-train` processor without Redis: a plain job object on the synthetic preference set
 * (test/reward.support.ts) trains a reward model, reports progress every step, writes a loadable
 * LlamaForSequenceClassification checkpoint and registers a candidate reward version with its held-out accuracy in
 * an embedded store; invalid job data fails without retry. The BullMQ wiring itself is the same as the sft job's.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UnrecoverableError } from 'bullmq';
import { rewardTrainJobResultSchema, rewardTrainProgressSchema, type RewardTrainJobDataInput, type RewardTrainProgress } from '@flywheel/contracts';
import { loadTrainerConfig } from '@flywheel/config';
import { loadCheckpoint } from '@flywheel/model';
import { findModelVersion, openStore } from '@flywheel/store';
import { RewardTrainProcessor } from '../apps/trainer/src/reward-train.processor';
import { TrainerStore } from '../apps/trainer/src/trainer.store';
import { syntheticPreferences, toJsonl } from './reward.support';
import { repoRoot } from './support/processes';

jest.setTimeout(90_000);

describe('reward-train job', () => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-rm-job-'));
  const config = loadTrainerConfig({ FLYWHEEL_STATE_DIR: stateDir, FLYWHEEL_TRAINER_THREADS: '1' });
  const processor = new RewardTrainProcessor(config, new TrainerStore(config));

  afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

  it('trains, reports progress, writes the checkpoint and registers the version with its held-out accuracy', async () => {
    const data = path.join(stateDir, 'prefs.jsonl');
    writeFileSync(data, toJsonl(syntheticPreferences(60)));
    const progress: RewardTrainProgress[] = [];
    const jobData: RewardTrainJobDataInput = { modelDir: path.join(repoRoot, 'models/stories260K'), data: { kind: 'jsonl', path: data }, steps: 20, seed: 2, heldout: 0.25 };
    const result = rewardTrainJobResultSchema.parse(
      await processor.process({ id: 'j1', data: jobData, updateProgress: async (p) => void progress.push(rewardTrainProgressSchema.parse(p)) }),
    );
    expect(progress.map((p) => p.step)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(result).toMatchObject({ versionId: 'rm-j1', pairs: 60, heldoutPairs: 15, registered: true, checkpointDir: path.join(stateDir, 'checkpoints', 'rm-j1') });
    expect(result.heldoutAccuracy).toBeGreaterThanOrEqual(0.85);
    expect(result.lossLast).toBeLessThan(result.lossFirst);

    const ck = await loadCheckpoint(result.checkpointDir);
    expect(ck.numLabels).toBe(1);
    const store = await openStore({ kind: 'pglite', dataDir: path.join(stateDir, 'store') });
    try {
      const row = await findModelVersion(store.db, 'rm-j1');
      expect(row).toMatchObject({ role: 'reward', status: 'candidate', checkpoint: result.checkpointDir });
      expect(row?.metrics).toMatchObject({ heldout_accuracy: result.heldoutAccuracy, pairs: 60 });
    } finally {
      await store.close();
    }
  });

  it('fails invalid job data without retry', async () => {
    await expect(processor.process({ id: 'bad', data: { modelDir: '', data: { kind: 'jsonl' } }, updateProgress: async () => undefined })).rejects.toBeInstanceOf(UnrecoverableError);
  });
});
