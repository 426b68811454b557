/**
 * The trainer's `dpo` processor without Redis: a plain job object on the synthetic preference set
 * (test/reward.support.ts) runs DPO on stories260K, reports progress every step, writes a loadable causal-LM
 * checkpoint and registers a candidate policy version (training run kind `dpo`) with its held-out implied-reward
 * accuracy in the embedded Postgres; invalid job data fails without retry. The BullMQ wiring is the same as the sft job's.
 * The version is published to a private nats-server's `checkpoints` object store with its lineage (parent: the
 * published base it was trained from), can be promoted and rolled back there, and a re-run publishes nothing new.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UnrecoverableError } from 'bullmq';
import type { NatsConnection } from 'nats';
import { dpoJobProgressSchema, dpoJobResultSchema, FLYWHEEL_VERSION, type DpoJobDataInput, type DpoJobProgress } from '@flywheel/contracts';
import { loadTrainerConfig } from '@flywheel/config';
import {
  connectMesh,
  createServiceMetrics,
  drainQuietly,
  findPublished,
  listModelVersions,
  MeshConnection,
  packCheckpoint,
  promoteVersion,
  putCheckpoint,
  Readiness,
  readActive,
  rollback,
} from '@flywheel/mesh';
import { loadCheckpoint } from '@flywheel/model';
import { findModelVersion, getTrainingRunDetail, openStore, startLockedEmbeddedPostgres, type EmbeddedPostgres } from '@flywheel/store';
import { DpoProcessor } from '../apps/trainer/src/dpo.processor';
import { TrainerStore } from '../apps/trainer/src/trainer.store';
import { syntheticPreferences, toJsonl } from './reward.support';
import { freePort, repoRoot, waitFor } from './support/processes';

jest.setTimeout(90_000);

describe('dpo job', () => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-dpo-job-'));
  let embedded: EmbeddedPostgres;
  let trainerStore: TrainerStore;
  let processor: DpoProcessor;
  let nats: ChildProcess;
  let nc: NatsConnection;
  let mesh: MeshConnection;
  /** The base the job trains from, published (and active) before it runs: the job's parent. */
  const BASE = 'stories260K-base';

  beforeAll(async () => {
    const natsPort = await freePort();
    nats = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(natsPort), '-sd', path.join(stateDir, 'nats')], { stdio: 'ignore' });
    const natsUrl = `nats://127.0.0.1:${natsPort}`;
    nc = await waitFor(() => connectMesh({ servers: [natsUrl], name: 'dpo-test' }), 10_000, 'private nats-server');
    mesh = new MeshConnection([natsUrl], 'dpo-test-trainer', new Readiness(), createServiceMetrics('trainer', 'dpo-test-trainer', FLYWHEEL_VERSION));
    await putCheckpoint(nc, { version: BASE, role: 'policy', dir: path.join(repoRoot, 'models/stories260K') });
    await promoteVersion(nc, 'policy', BASE, 'test', 'the base');
    embedded = await startLockedEmbeddedPostgres({ dataDir: path.join(stateDir, 'store') });
    const config = loadTrainerConfig({ FLYWHEEL_STATE_DIR: stateDir, FLYWHEEL_TRAINER_THREADS: '1', DATABASE_URL: embedded.url });
    trainerStore = new TrainerStore(config);
    processor = new DpoProcessor(config, trainerStore, mesh);
  });

  afterAll(async () => {
    await trainerStore?.onApplicationShutdown();
    await embedded?.stop();
    await mesh?.close();
    await drainQuietly(nc);
    nats?.kill('SIGTERM');
    rmSync(stateDir, { recursive: true, force: true });
  });

  const JOB_CREATED = Date.parse('2026-01-02T03:04:05Z');
  const VERSION = `dpo-j1-${JOB_CREATED.toString(36)}`;

  it('trains, reports progress, writes the checkpoint and registers a candidate policy with its held-out accuracy', async () => {
    const data = path.join(stateDir, 'prefs.jsonl');
    writeFileSync(data, toJsonl(syntheticPreferences(60)));
    const progress: DpoJobProgress[] = [];
    const jobData: DpoJobDataInput = { modelDir: path.join(repoRoot, 'models/stories260K'), data: { kind: 'jsonl', path: data }, steps: 20, seed: 2, heldout: 0.25 };
    const result = dpoJobResultSchema.parse(
      await processor.process({ id: 'j1', timestamp: JOB_CREATED, data: jobData, updateProgress: async (p) => void progress.push(dpoJobProgressSchema.parse(p)) }),
    );
    expect(progress.map((p) => p.step)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(result).toMatchObject({ versionId: VERSION, trainingRunId: VERSION, pairs: 60, heldoutPairs: 15, steps: 20, resumedFromStep: 0 });
    expect(result.checkpointDir).toBe(path.join(stateDir, 'checkpoints', VERSION));
    expect(result.heldoutAccuracyBefore).toBe(0.5);
    expect(result.heldoutAccuracy).toBeGreaterThanOrEqual(0.85);
    expect(result.heldoutMarginAfter).toBeGreaterThan(0);
    expect(result.lossLast).toBeLessThan(result.lossFirst!);

    const ck = await loadCheckpoint(result.checkpointDir);
    expect(ck.numLabels).toBeNull();
    const store = await openStore({ url: embedded.url });
    try {
      const row = await findModelVersion(store.db, VERSION);
      expect(row).toMatchObject({ role: 'policy', status: 'candidate', checkpoint: result.checkpointDir, training_run_id: VERSION });
      expect(row?.metrics).toMatchObject({ heldout_accuracy: result.heldoutAccuracy, heldout_accuracy_before: 0.5, pairs: 60, beta: 0.1 });
      const run = await store.db.selectFrom('training_runs').select(['kind', 'status', 'base_version']).where('id', '=', VERSION).executeTakeFirst();
      expect(run).toEqual({ kind: 'dpo', status: 'succeeded', base_version: BASE });
      // Every step is in the run's series (the admin UI's curves), loss falling.
      const series = (await getTrainingRunDetail(store.db, VERSION))?.series ?? [];
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
    await expect(processor.process({ id: 'bad', timestamp: JOB_CREATED, data: bad, updateProgress: async () => undefined })).rejects.toBeInstanceOf(UnrecoverableError);
  });

  it('refuses, without retry and before training, an outName that cannot be a published version', async () => {
    const jobData: DpoJobDataInput = { modelDir: path.join(repoRoot, 'models/stories260K'), data: { kind: 'jsonl', path: path.join(stateDir, 'prefs.jsonl') }, outName: '-dash-first' };
    const refused = processor.process({ id: 'j2', timestamp: JOB_CREATED, data: jobData, updateProgress: async () => undefined });
    await expect(refused).rejects.toBeInstanceOf(UnrecoverableError);
    await expect(refused).rejects.toThrow(/cannot publish "-dash-first" as a version/);
  });

  it('publishes the version with its lineage, so the admin promote route can make it active and roll it back', async () => {
    const published = await findPublished(nc, VERSION);
    expect(published).toMatchObject({ version: VERSION, role: 'policy', parent: BASE, runId: VERSION, exports: [] });
    expect(published?.checkpoint.sha256).toBe(createHash('sha256').update(packCheckpoint(path.join(stateDir, 'checkpoints', VERSION)).data).digest('hex'));
    // The Models page lists it as a candidate; its Promote button is promoteVersion (one KV write), Roll back is rollback.
    expect((await listModelVersions(nc, 'policy')).versions).toContainEqual(expect.objectContaining({ version: VERSION, parent: BASE, runId: VERSION, state: 'candidate' }));
    await promoteVersion(nc, 'policy', VERSION, 'admin:test', 'dpo candidate');
    expect(await readActive(nc, 'policy')).toMatchObject({ version: VERSION, parent: BASE, runId: VERSION, checkpoint: published?.checkpoint });
    await rollback(nc, 'policy', 'admin:test');
    expect((await readActive(nc, 'policy'))?.version).toBe(BASE);
  });

  it('run again under the same id, resumes from its final checkpoint and finds its version already published', async () => {
    const before = await findPublished(nc, VERSION);
    const jobData: DpoJobDataInput = { modelDir: path.join(repoRoot, 'models/stories260K'), data: { kind: 'jsonl', path: path.join(stateDir, 'prefs.jsonl') }, steps: 20, seed: 2, heldout: 0.25 };
    const again = dpoJobResultSchema.parse(await processor.process({ id: 'j1', timestamp: JOB_CREATED, data: jobData, updateProgress: async () => undefined }));
    expect(again).toMatchObject({ versionId: VERSION, resumedFromStep: 20 });
    expect(await findPublished(nc, VERSION)).toEqual(before);
  });
});
