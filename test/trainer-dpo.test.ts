/**
 * The trainer's `dpo` processor without Redis: a plain job object on the synthetic preference set
 * (test/reward.support.ts) runs DPO on stories260K, reports progress every step, writes a loadable causal-LM
 * checkpoint and registers a candidate policy version (training run kind `dpo`) with its held-out implied-reward
 * accuracy in the embedded Postgres; invalid job data fails without retry. The BullMQ wiring is the same as the sft job's.
 * The version is published to a private nats-server's `checkpoints` object store with its lineage (parent: the
 * published base it was trained from), can be promoted and rolled back there, and a re-run publishes nothing new.
 * On the compiled trainer against this machine's real Redis (queues under a prefix of this run only), a trainer
 * stopped with SIGTERM checkpoints its running dpo job and requeues it, and the next trainer resumes it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Queue, QueueEvents, UnrecoverableError, type Job } from 'bullmq';
import IORedis from 'ioredis';
import type { NatsConnection } from 'nats';
import { dpoJobProgressSchema, dpoJobResultSchema, FLYWHEEL_VERSION, QUEUES, type DpoJobDataInput, type DpoJobProgress } from '@flywheel/contracts';
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
import { freePort, getJson, portsEnv, repoRoot, run, serviceEntry, stop, waitFor, type Running } from './support/processes';

jest.setTimeout(90_000);

describe('dpo job', () => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-dpo-job-'));
  let embedded: EmbeddedPostgres;
  let trainerStore: TrainerStore;
  let processor: DpoProcessor;
  let nats: ChildProcess;
  let nc: NatsConnection;
  let mesh: MeshConnection;
  let natsUrl: string;
  /** The base the job trains from, published (and active) before it runs: the job's parent. */
  const BASE = 'stories260K-base';

  beforeAll(async () => {
    const natsPort = await freePort();
    nats = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(natsPort), '-sd', path.join(stateDir, 'nats')], { stdio: 'ignore' });
    natsUrl = `nats://127.0.0.1:${natsPort}`;
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

  describe('on the compiled trainer (real Redis)', () => {
    const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
    const prefix = `fwtest-dpo-${process.pid}-${Date.now()}`;
    let env: Record<string, string>;
    let trainer: Running | undefined;
    let connection: IORedis;
    let queue: Queue;
    let events: QueueEvents;
    const progress = new Map<string, DpoJobProgress[]>();

    const startTrainer = async (): Promise<Running> => {
      const r = run(process.execPath, [serviceEntry('trainer')], env);
      await waitFor(async () => {
        const res = await getJson(`http://127.0.0.1:${env.FLYWHEEL_TRAINER_PORT}/readyz`);
        return res.status === 200 ? true : undefined;
      }, 30_000, 'trainer ready');
      return r;
    };

    beforeAll(async () => {
      env = {
        ...(await portsEnv()),
        NATS_URL: natsUrl,
        REDIS_URL,
        DATABASE_URL: embedded.url,
        FLYWHEEL_STATE_DIR: stateDir,
        FLYWHEEL_QUEUE_PREFIX: prefix,
        FLYWHEEL_TRAINER_LOCK_MS: '2000',
        FLYWHEEL_TRAINER_THREADS: '1',
      };
      connection = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
      queue = new Queue(QUEUES.dpo, { connection, prefix });
      events = new QueueEvents(QUEUES.dpo, { connection: { url: REDIS_URL }, prefix });
      events.on('progress', ({ jobId, data }) => {
        const p = dpoJobProgressSchema.safeParse(data);
        if (p.success) progress.set(jobId, [...(progress.get(jobId) ?? []), p.data]);
      });
      await events.waitUntilReady();
      trainer = await startTrainer();
    });

    afterAll(async () => {
      await stop(trainer);
      // The trainer creates every trainer queue under this run's prefix: remove them all, not just dpo.
      for (const name of Object.values(QUEUES)) {
        const q = new Queue(name, { connection, prefix });
        await q.obliterate({ force: true }).catch(() => undefined);
        await q.close();
      }
      await events?.close();
      await queue?.close();
      await connection?.quit();
    });

    it('on SIGTERM checkpoints the running job at its next step and puts it back in the queue', async () => {
      const data = path.join(stateDir, 'prefs-requeue.jsonl');
      writeFileSync(data, toJsonl(syntheticPreferences(60)));
      const jobData: DpoJobDataInput = { modelDir: path.join(repoRoot, 'models/stories260K'), data: { kind: 'jsonl', path: data }, steps: 40, seed: 3, heldout: 0.25, checkpointEvery: 1000 };
      const job: Job = await queue.add(QUEUES.dpo, jobData, { jobId: 'dpo-c' });
      const stopped = trainer!;
      await waitFor(async () => ((progress.get('dpo-c') ?? []).length >= 3 ? true : undefined), 60_000, 'three steps');
      await stop(stopped, 'SIGTERM');
      const at = Number(/job dpo-c: trainer shutting down; stopped at step (\d+)/.exec(stopped.output())?.[1]);
      expect(at).toBeGreaterThanOrEqual(3);
      expect(await job.getState()).toBe('waiting');

      trainer = await startTrainer();
      const result = dpoJobResultSchema.parse(await job.waitUntilFinished(events, 90_000));
      expect(result.resumedFromStep).toBe(at);
    }, 180_000);
  });
});
