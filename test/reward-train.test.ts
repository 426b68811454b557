/**
 * The trainer's `reward-train` processor without Redis: a plain job object on the synthetic preference set
 * (test/reward.support.ts) trains a reward model, reports progress every step, writes a loadable
 * LlamaForSequenceClassification checkpoint and registers a candidate reward version with its held-out accuracy in
 * the embedded Postgres; invalid job data fails without retry. The BullMQ wiring itself is the same as the sft job's.
 * The version is published to a private nats-server's `checkpoints` object store (parent: the reward version active
 * when it was trained) and can be promoted and rolled back there.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UnrecoverableError } from 'bullmq';
import type { NatsConnection } from 'nats';
import { FLYWHEEL_VERSION, rewardTrainJobResultSchema, rewardTrainProgressSchema, type RewardTrainJobDataInput, type RewardTrainProgress } from '@flywheel/contracts';
import { loadTrainerConfig } from '@flywheel/config';
import { connectMesh, createServiceMetrics, drainQuietly, findPublished, MeshConnection, promoteVersion, putCheckpoint, Readiness, readActive, rollback } from '@flywheel/mesh';
import { loadCheckpoint } from '@flywheel/model';
import { findModelVersion, openStore, startLockedEmbeddedPostgres, type EmbeddedPostgres } from '@flywheel/store';
import { publishVersion } from '../apps/trainer/src/checkpoint.publisher';
import { RewardTrainProcessor } from '../apps/trainer/src/reward-train.processor';
import { TrainerStore } from '../apps/trainer/src/trainer.store';
import { syntheticPreferences, toJsonl } from './reward.support';
import { freePort, repoRoot, waitFor } from './support/processes';

jest.setTimeout(90_000);

describe('reward-train job', () => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-rm-job-'));
  let embedded: EmbeddedPostgres;
  let trainerStore: TrainerStore;
  let processor: RewardTrainProcessor;
  let nats: ChildProcess;
  let nc: NatsConnection;
  let mesh: MeshConnection;
  /** A reward version active before the job runs: the job's parent. */
  const ACTIVE_RM = 'rm-before';
  const JOB_CREATED = Date.parse('2026-01-02T03:04:05Z');
  const VERSION = `rm-j1-${JOB_CREATED.toString(36)}`;

  beforeAll(async () => {
    const natsPort = await freePort();
    nats = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(natsPort), '-sd', path.join(stateDir, 'nats')], { stdio: 'ignore' });
    const natsUrl = `nats://127.0.0.1:${natsPort}`;
    nc = await waitFor(() => connectMesh({ servers: [natsUrl], name: 'rm-test' }), 10_000, 'private nats-server');
    mesh = new MeshConnection([natsUrl], 'rm-test-trainer', new Readiness(), createServiceMetrics('trainer', 'rm-test-trainer', FLYWHEEL_VERSION));
    await putCheckpoint(nc, { version: ACTIVE_RM, role: 'reward', dir: path.join(repoRoot, 'models/stories260K') });
    await promoteVersion(nc, 'reward', ACTIVE_RM, 'test', 'the reward model before');
    embedded = await startLockedEmbeddedPostgres({ dataDir: path.join(stateDir, 'store') });
    const config = loadTrainerConfig({ FLYWHEEL_STATE_DIR: stateDir, FLYWHEEL_TRAINER_THREADS: '1', DATABASE_URL: embedded.url });
    trainerStore = new TrainerStore(config);
    processor = new RewardTrainProcessor(config, trainerStore, mesh);
  });

  afterAll(async () => {
    await trainerStore?.onApplicationShutdown();
    await embedded?.stop();
    await mesh?.close();
    await drainQuietly(nc);
    nats?.kill('SIGTERM');
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('trains, reports progress, writes the checkpoint and registers the version with its held-out accuracy', async () => {
    const data = path.join(stateDir, 'prefs.jsonl');
    writeFileSync(data, toJsonl(syntheticPreferences(60)));
    const progress: RewardTrainProgress[] = [];
    const jobData: RewardTrainJobDataInput = { modelDir: path.join(repoRoot, 'models/stories260K'), data: { kind: 'jsonl', path: data }, steps: 20, seed: 2, heldout: 0.25 };
    const result = rewardTrainJobResultSchema.parse(
      await processor.process({ id: 'j1', timestamp: JOB_CREATED, data: jobData, updateProgress: async (p) => void progress.push(rewardTrainProgressSchema.parse(p)) }),
    );
    expect(progress.map((p) => p.step)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(result).toMatchObject({ versionId: VERSION, pairs: 60, heldoutPairs: 15, registered: true, checkpointDir: path.join(stateDir, 'checkpoints', VERSION) });
    expect(result.heldoutAccuracy).toBeGreaterThanOrEqual(0.85);
    expect(result.lossLast).toBeLessThan(result.lossFirst);

    const ck = await loadCheckpoint(result.checkpointDir);
    expect(ck.numLabels).toBe(1);
    const store = await openStore({ url: embedded.url });
    try {
      const row = await findModelVersion(store.db, VERSION);
      expect(row).toMatchObject({ role: 'reward', status: 'candidate', checkpoint: result.checkpointDir });
      expect(row?.metrics).toMatchObject({ heldout_accuracy: result.heldoutAccuracy, pairs: 60 });
    } finally {
      await store.close();
    }
  });

  it('fails invalid job data without retry', async () => {
    await expect(processor.process({ id: 'bad', timestamp: JOB_CREATED, data: { modelDir: '', data: { kind: 'jsonl' } }, updateProgress: async () => undefined })).rejects.toBeInstanceOf(UnrecoverableError);
  });

  it('publishes the reward version with its lineage, so the admin promote route can make it active and roll it back', async () => {
    const published = await findPublished(nc, VERSION);
    expect(published).toMatchObject({ version: VERSION, role: 'reward', parent: ACTIVE_RM, runId: VERSION, exports: [] });
    // A loop's publish-reward stage publishes the same version after its reward-train stage: nothing changes.
    await publishVersion(mesh, { version: VERSION, role: 'reward', dir: path.join(stateDir, 'checkpoints', VERSION), parent: ACTIVE_RM, runId: VERSION, exports: [] });
    expect(await findPublished(nc, VERSION)).toEqual(published);
    await promoteVersion(nc, 'reward', VERSION, 'admin:test', 'reward candidate');
    expect(await readActive(nc, 'reward')).toMatchObject({ version: VERSION, parent: ACTIVE_RM, runId: VERSION, checkpoint: published?.checkpoint });
    await rollback(nc, 'reward', 'admin:test');
    expect((await readActive(nc, 'reward'))?.version).toBe(ACTIVE_RM);
  });
});
