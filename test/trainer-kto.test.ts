/**
 * The trainer's `kto` processor without Redis: a plain job object on the synthetic unpaired KTO set
 * (test/reward.support.ts) runs KTO on stories260K, reports progress every step, writes a loadable causal-LM checkpoint
 * and registers a candidate policy version (training run kind `kto`, which the store accepts from migration
 * 0007_kto_runs) with its held-out implied-reward separation in the embedded Postgres; the version is published to a
 * private nats-server's `checkpoints` object store with its lineage; invalid job data fails without retry. Not the
 * BullMQ wiring nor shutdown and requeue (the same as the dpo job's, test/trainer-dpo.test.ts), nor resume
 * (libs/rl/src/kto.trainer.spec.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UnrecoverableError } from 'bullmq';
import type { NatsConnection } from 'nats';
import { FLYWHEEL_VERSION, ktoJobProgressSchema, ktoJobResultSchema, type KtoJobDataInput, type KtoJobProgress } from '@flywheel/contracts';
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
} from '@flywheel/mesh';
import { loadCheckpoint } from '@flywheel/model';
import { findModelVersion, getTrainingRunDetail, openStore, startLockedEmbeddedPostgres, type EmbeddedPostgres } from '@flywheel/store';
import { KtoProcessor } from '../apps/trainer/src/kto.processor';
import { TrainerStore } from '../apps/trainer/src/trainer.store';
import { syntheticKto, toJsonl } from './reward.support';
import { freePort, repoRoot, waitFor } from './support/processes';

jest.setTimeout(90_000);

describe('kto job', () => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-kto-job-'));
  let embedded: EmbeddedPostgres;
  let trainerStore: TrainerStore;
  let processor: KtoProcessor;
  let nats: ChildProcess;
  let nc: NatsConnection;
  let mesh: MeshConnection;
  /** The base the job trains from, published (and active) before it runs: the job's parent. */
  const BASE = 'stories260K-base';

  beforeAll(async () => {
    const natsPort = await freePort();
    nats = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(natsPort), '-sd', path.join(stateDir, 'nats')], { stdio: 'ignore' });
    const natsUrl = `nats://127.0.0.1:${natsPort}`;
    nc = await waitFor(() => connectMesh({ servers: [natsUrl], name: 'kto-test' }), 10_000, 'private nats-server');
    mesh = new MeshConnection([natsUrl], 'kto-test-trainer', new Readiness(), createServiceMetrics('trainer', 'kto-test-trainer', FLYWHEEL_VERSION));
    await putCheckpoint(nc, { version: BASE, role: 'policy', dir: path.join(repoRoot, 'models/stories260K') });
    await promoteVersion(nc, 'policy', BASE, 'test', 'the base');
    embedded = await startLockedEmbeddedPostgres({ dataDir: path.join(stateDir, 'store') });
    const config = loadTrainerConfig({ FLYWHEEL_STATE_DIR: stateDir, FLYWHEEL_TRAINER_THREADS: '1', DATABASE_URL: embedded.url });
    trainerStore = new TrainerStore(config);
    processor = new KtoProcessor(config, trainerStore, mesh);
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
  const VERSION = `kto-j1-${JOB_CREATED.toString(36)}`;

  it('trains, reports progress, writes the checkpoint and registers a candidate policy with its held-out separation', async () => {
    const data = path.join(stateDir, 'kto.jsonl');
    writeFileSync(data, toJsonl(syntheticKto(60)));
    const progress: KtoJobProgress[] = [];
    const jobData: KtoJobDataInput = { modelDir: path.join(repoRoot, 'models/stories260K'), data: { kind: 'jsonl', path: data }, steps: 20, seed: 2, heldout: 0.25 };
    const result = ktoJobResultSchema.parse(
      await processor.process({ id: 'j1', timestamp: JOB_CREATED, data: jobData, updateProgress: async (p) => void progress.push(ktoJobProgressSchema.parse(p)) }),
    );
    expect(progress.map((p) => p.step)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(progress.every((p) => p.steps === 20 && p.desirable + p.undesirable >= 2 && Number.isFinite(p.loss))).toBe(true);
    expect(result).toMatchObject({ versionId: VERSION, trainingRunId: VERSION, examples: 60, desirable: 30, undesirable: 30, heldoutExamples: 15, steps: 20, resumedFromStep: 0 });
    expect(result.checkpointDir).toBe(path.join(stateDir, 'checkpoints', VERSION));
    expect(result.heldoutSeparationBefore).toBe(0.5);
    expect(result.heldoutMarginBefore).toBe(0);
    expect(result.heldoutSeparation).toBeGreaterThanOrEqual(0.85);
    expect(result.heldoutMarginAfter).toBeGreaterThan(0);
    expect(result.lossLast).toBeLessThan(result.lossFirst!);

    const ck = await loadCheckpoint(result.checkpointDir);
    expect(ck.numLabels).toBeNull();
    const store = await openStore({ url: embedded.url });
    try {
      const row = await findModelVersion(store.db, VERSION);
      expect(row).toMatchObject({ role: 'policy', status: 'candidate', checkpoint: result.checkpointDir, training_run_id: VERSION });
      expect(row?.metrics).toMatchObject({
        heldout_separation: result.heldoutSeparation,
        heldout_separation_before: 0.5,
        heldout_margin_after: result.heldoutMarginAfter,
        examples: 60,
        desirable: 30,
        undesirable: 30,
        beta: 0.1,
        desirable_weight: 1,
        undesirable_weight: 1,
      });
      const run = await store.db.selectFrom('training_runs').select(['kind', 'status', 'base_version']).where('id', '=', VERSION).executeTakeFirst();
      expect(run).toEqual({ kind: 'kto', status: 'succeeded', base_version: BASE });
      // Every step is in the run's series (the admin UI's curves), loss falling, with the KL reference point.
      const series = (await getTrainingRunDetail(store.db, VERSION))?.series ?? [];
      expect(series.map((p) => p.step)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect(series[series.length - 1].metrics.loss!).toBeLessThan(series[0].metrics.loss!);
      expect(series[0].metrics).toHaveProperty('kl');
    } finally {
      await store.close();
    }
  });

  it('publishes the version with its lineage: parent the published base, run id the training run', async () => {
    const published = await findPublished(nc, VERSION);
    expect(published).toMatchObject({ version: VERSION, role: 'policy', parent: BASE, runId: VERSION, exports: [] });
    expect(published?.checkpoint.sha256).toBe(createHash('sha256').update(packCheckpoint(path.join(stateDir, 'checkpoints', VERSION)).data).digest('hex'));
    expect((await listModelVersions(nc, 'policy')).versions).toContainEqual(expect.objectContaining({ version: VERSION, parent: BASE, runId: VERSION, state: 'candidate' }));
  });

  it('fails invalid job data without retry', async () => {
    const bad = { modelDir: 'm', data: { kind: 'jsonl', path: 'p' }, batchSize: 1 };
    const refused = processor.process({ id: 'bad', timestamp: JOB_CREATED, data: bad, updateProgress: async () => undefined });
    await expect(refused).rejects.toBeInstanceOf(UnrecoverableError);
    await expect(refused).rejects.toThrow(/^invalid kto job data: batchSize /);
  });
});
