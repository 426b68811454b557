/**
 * The BullMQ `sft` job end to end: the compiled trainer against this machine's real Redis (queues under a prefix
 * of this run only) and NATS, with the embedded Postgres in a temporary state folder holding an SFT export of
 * test/fixtures/sft/stories.jsonl. Fine-tunes models/stories260K for a few steps; then a trainer killed after a
 * checkpoint is restarted and the job resumes from the saved step; one stopped with SIGTERM checkpoints and
 * requeues its job, which the next trainer resumes. Each job's version is published with its lineage (parent: the
 * published base it started from) and can be promoted and rolled back; on a private nats-server, because other
 * suites' services watch the `models` KV of the machine's NATS.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue, QueueEvents, type Job } from 'bullmq';
import IORedis from 'ioredis';
import type { NatsConnection } from 'nats';
import { QUEUES, sftJobProgressSchema, sftJobResultSchema, type SftJobDataInput, type SftJobProgress } from '@flywheel/contracts';
import { connectMesh, drainQuietly, findPublished, listModelVersions, packCheckpoint, promoteVersion, putCheckpoint, readActive, rollback } from '@flywheel/mesh';
import { loadCheckpoint } from '@flywheel/model';
import { findModelVersion, getTrainingRunDetail, openStore, startLockedEmbeddedPostgres, type EmbeddedPostgres } from '@flywheel/store';
import { freePort, getJson, portsEnv, repoRoot, run, serviceEntry, stop, waitFor, type Running } from './support/processes';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const FIXTURE = path.join(repoRoot, 'test', 'fixtures', 'sft', 'stories.jsonl');
const EXPORT_ID = 'exp-sft-stories';
jest.setTimeout(120_000);

describe('sft job on the trainer (real Redis, the embedded Postgres)', () => {
  const prefix = `fwtest-sft-${process.pid}-${Date.now()}`;
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'flywheel-sft-'));
  let env: Record<string, string>;
  let trainer: Running | undefined;
  let connection: IORedis;
  let queue: Queue;
  let events: QueueEvents;
  let embedded: EmbeddedPostgres;
  const progress = new Map<string, SftJobProgress[]>();
  let nats: ChildProcess;
  let natsUrl: string;
  let nc: NatsConnection;
  /** models/stories260K published (and active) before the jobs run: every job's parent. */
  const BASE = 'stories260K-base';

  const startTrainer = async (): Promise<Running> => {
    const r = run(process.execPath, [serviceEntry('trainer')], env);
    await waitFor(async () => {
      const res = await getJson(`http://127.0.0.1:${env.FLYWHEEL_TRAINER_PORT}/readyz`);
      return res.status === 200 ? true : undefined;
    }, 30_000, 'trainer ready');
    return r;
  };

  beforeAll(async () => {
    const natsPort = await freePort();
    nats = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(natsPort), '-sd', path.join(stateDir, 'nats')], { stdio: 'ignore' });
    natsUrl = `nats://127.0.0.1:${natsPort}`;
    nc = await waitFor(() => connectMesh({ servers: [natsUrl], name: 'sft-test' }), 10_000, 'private nats-server');
    await putCheckpoint(nc, { version: BASE, role: 'policy', dir: path.join(repoRoot, 'models', 'stories260K') });
    await promoteVersion(nc, 'policy', BASE, 'test', 'the base');

    const content = readFileSync(FIXTURE, 'utf8');
    embedded = await startLockedEmbeddedPostgres({ dataDir: path.join(stateDir, 'store') });
    const store = await openStore({ url: embedded.url });
    await store.db
      .insertInto('exports')
      .values({
        id: EXPORT_ID,
        format: 'sft',
        filters: JSON.stringify({}),
        row_count: content.trim().split('\n').length,
        bytes: Buffer.byteLength(content),
        sha256: createHash('sha256').update(content).digest('hex'),
        created_by: 'test',
        content,
      })
      .execute();
    await store.close();
    env = {
      ...(await portsEnv()),
      NATS_URL: natsUrl,
      REDIS_URL,
      DATABASE_URL: embedded.url,
      FLYWHEEL_STATE_DIR: stateDir,
      FLYWHEEL_QUEUE_PREFIX: prefix,
      FLYWHEEL_TRAINER_LOCK_MS: '2000',
    };
    connection = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
    queue = new Queue(QUEUES.sft, { connection, prefix });
    events = new QueueEvents(QUEUES.sft, { connection: { url: REDIS_URL }, prefix });
    events.on('progress', ({ jobId, data }) => {
      const p = sftJobProgressSchema.safeParse(data);
      if (p.success) progress.set(jobId, [...(progress.get(jobId) ?? []), p.data]);
    });
    await events.waitUntilReady();
    trainer = await startTrainer();
  });

  afterAll(async () => {
    await stop(trainer);
    await drainQuietly(nc);
    nats?.kill('SIGTERM');
    // The trainer creates every trainer queue under this run's prefix: remove them all, not just sft.
    for (const name of Object.values(QUEUES)) {
      const q = new Queue(name, { connection, prefix });
      await q.obliterate({ force: true }).catch(() => undefined);
      await q.close();
    }
    await events?.close();
    await queue?.close();
    await connection?.quit();
    await embedded?.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });

  const jobData = (steps: number, checkpointEvery: number): SftJobDataInput => ({
    modelDir: path.join(repoRoot, 'models', 'stories260K'),
    data: { kind: 'export', exportId: EXPORT_ID },
    steps,
    lr: 3e-3,
    batchSize: 8,
    seed: 1,
    heldout: 0.2,
    checkpointEvery,
  });

  it('fine-tunes on the export, reports progress, and registers a candidate policy version', async () => {
    const job: Job = await queue.add('sft', jobData(30, 10), { jobId: 'sft-a' });
    const result = sftJobResultSchema.parse(await job.waitUntilFinished(events, 90_000));

    const seen = progress.get('sft-a') ?? [];
    expect(seen.length).toBeGreaterThan(0);
    expect(seen[seen.length - 1]).toMatchObject({ step: 30, steps: 30 });
    for (const p of seen) {
      expect(p.loss).toBeGreaterThan(0);
      expect(p.tokensPerS).toBeGreaterThan(0);
      expect(p.gradNorm).toBeGreaterThan(0);
    }
    expect(result.resumedFromStep).toBe(0);
    expect(result.heldoutLossBefore).not.toBeNull();
    expect(result.heldoutLossAfter!).toBeLessThan(result.heldoutLossBefore! * 0.7);
    // Named like every published training job: the job id and its creation time (a job id can come back, a version not).
    expect(result.versionId).toBe(`sft-sft-a-${job.timestamp.toString(36)}`);
    expect(result.checkpointDir).toBe(path.join(stateDir, 'checkpoints', result.versionId));

    const ck = await loadCheckpoint(result.checkpointDir);
    expect(ck.spec.vocabSize).toBe(512);
    expect(ck.weights.size).toBeGreaterThan(0);

    const store = await openStore({ url: embedded.url });
    try {
      const version = await findModelVersion(store.db, result.versionId);
      expect(version).toMatchObject({ role: 'policy', status: 'candidate', checkpoint: result.checkpointDir, training_run_id: result.trainingRunId });
      expect(version?.metrics).toMatchObject({ heldout_loss_before: result.heldoutLossBefore, heldout_loss_after: result.heldoutLossAfter });
      const runRow = await store.db.selectFrom('training_runs').selectAll().where('id', '=', result.trainingRunId).executeTakeFirst();
      expect(runRow).toMatchObject({ kind: 'sft', status: 'succeeded', export_id: EXPORT_ID, base_version: BASE });
      // Every step's metrics are the run's series (the admin UI's curves).
      const detail = await getTrainingRunDetail(store.db, result.trainingRunId);
      expect(detail?.series.map((p) => p.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
      expect(detail?.series[29].metrics.loss).toBeCloseTo(seen[seen.length - 1].loss, 10);
      expect(Object.keys(detail?.series[0].metrics ?? {}).sort()).toEqual(['gradNorm', 'loss', 'lr', 'tokensPerS']);
    } finally {
      await store.close();
    }
  });

  it('publishes the version with its lineage, so the admin promote route can make it active and roll it back', async () => {
    const version = (await listModelVersions(nc, 'policy')).versions.find((v) => v.runId?.startsWith('sft-sft-a-'));
    expect(version).toMatchObject({ parent: BASE, exports: [EXPORT_ID], state: 'candidate' });
    const published = await findPublished(nc, version!.version);
    expect(published).toMatchObject({ role: 'policy', parent: BASE, runId: version!.version, exports: [EXPORT_ID] });
    const dir = path.join(stateDir, 'checkpoints', version!.version);
    expect(published?.checkpoint.sha256).toBe(createHash('sha256').update(packCheckpoint(dir).data).digest('hex'));
    // The Models page's Promote is promoteVersion (one KV write), its Roll back is rollback.
    await promoteVersion(nc, 'policy', version!.version, 'admin:test', 'sft candidate');
    expect(await readActive(nc, 'policy')).toMatchObject({ version: version!.version, parent: BASE, runId: version!.version, exports: [EXPORT_ID] });
    await rollback(nc, 'policy', 'admin:test');
    expect((await readActive(nc, 'policy'))?.version).toBe(BASE);
  });

  it('resumes from the last checkpoint when the trainer is killed mid-job and restarted', async () => {
    const job: Job = await queue.add('sft', jobData(60, 5), { jobId: 'sft-b' });
    const killed = trainer!;
    await waitFor(async () => (/job sft-b: checkpoint at step \d+/.test(killed.output()) ? true : undefined), 60_000, 'first checkpoint');
    await stop(killed, 'SIGKILL');
    expect(/job sft-b: step 60\/60/.test(killed.output())).toBe(false);

    trainer = await startTrainer();
    const result = sftJobResultSchema.parse(await job.waitUntilFinished(events, 90_000));
    const resumedAt = Number(/job sft-b: resuming from step (\d+)/.exec(trainer.output())?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt % 5).toBe(0);
    expect(result.resumedFromStep).toBe(resumedAt);
    // The restarted run reports from the step after the checkpoint: where the step count goes back, it is resumedAt + 1.
    const all = progress.get('sft-b') ?? [];
    const restart = all.findIndex((p, i) => i > 0 && p.step <= all[i - 1].step);
    if (restart >= 0) expect(all[restart].step).toBe(resumedAt + 1);
    expect(all[all.length - 1]?.step).toBe(60);
    expect(result.heldoutLossAfter!).toBeLessThan(result.heldoutLossBefore!);
    // The restarted trainer published the resumed run's version, under the name the first trainer gave it.
    expect(result.versionId).toBe(`sft-sft-b-${job.timestamp.toString(36)}`);
    expect(await findPublished(nc, result.versionId)).toMatchObject({ role: 'policy', parent: BASE, runId: result.versionId });
  });

  it('on SIGTERM checkpoints the running job at its next step and puts it back in the queue', async () => {
    const job: Job = await queue.add('sft', jobData(60, 1000), { jobId: 'sft-c' });
    const stopped = trainer!;
    await waitFor(async () => ((progress.get('sft-c') ?? []).length >= 3 ? true : undefined), 60_000, 'three steps');
    await stop(stopped, 'SIGTERM');
    const at = Number(/job sft-c: trainer shutting down; stopped at step (\d+)/.exec(stopped.output())?.[1]);
    expect(at).toBeGreaterThanOrEqual(3);
    expect(await job.getState()).toBe('waiting');

    trainer = await startTrainer();
    const result = sftJobResultSchema.parse(await job.waitUntilFinished(events, 90_000));
    expect(result.resumedFromStep).toBe(at);
  });
});
