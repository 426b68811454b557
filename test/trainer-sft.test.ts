/**
 * The BullMQ `sft` job end to end: the compiled trainer against this machine's real Redis (queues under a prefix
 * of this run only) and NATS, with the embedded store in a temporary state folder holding an SFT export of
 * test/fixtures/sft/stories.jsonl. Fine-tunes models/stories260K for a few steps; then a trainer killed after a
 * checkpoint is restarted and the job resumes from the saved step; one stopped with SIGTERM checkpoints and
 * requeues its job, which the next trainer resumes.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue, QueueEvents, type Job } from 'bullmq';
import IORedis from 'ioredis';
import { QUEUES, sftJobProgressSchema, sftJobResultSchema, type SftJobDataInput, type SftJobProgress } from '@flywheel/contracts';
import { loadCheckpoint } from '@flywheel/model';
import { findModelVersion, getTrainingRunDetail, openStore } from '@flywheel/store';
import { getJson, portsEnv, repoRoot, run, serviceEntry, stop, waitFor, type Running } from './support/processes';

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const FIXTURE = path.join(repoRoot, 'test', 'fixtures', 'sft', 'stories.jsonl');
const EXPORT_ID = 'exp-sft-stories';
jest.setTimeout(120_000);

describe('sft job on the trainer (real Redis, embedded store)', () => {
  const prefix = `fwtest-sft-${process.pid}-${Date.now()}`;
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'flywheel-sft-'));
  let env: Record<string, string>;
  let trainer: Running | undefined;
  let connection: IORedis;
  let queue: Queue;
  let events: QueueEvents;
  const progress = new Map<string, SftJobProgress[]>();

  const startTrainer = async (): Promise<Running> => {
    const r = run(process.execPath, [serviceEntry('trainer')], env);
    await waitFor(async () => {
      const res = await getJson(`http://127.0.0.1:${env.FLYWHEEL_TRAINER_PORT}/readyz`);
      return res.status === 200 ? true : undefined;
    }, 30_000, 'trainer ready');
    return r;
  };

  beforeAll(async () => {
    const content = readFileSync(FIXTURE, 'utf8');
    const store = await openStore({ kind: 'pglite', dataDir: path.join(stateDir, 'store') });
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
      NATS_URL,
      REDIS_URL,
      DATABASE_URL: '',
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
    // The trainer creates every trainer queue under this run's prefix: remove them all, not just sft.
    for (const name of Object.values(QUEUES)) {
      const q = new Queue(name, { connection, prefix });
      await q.obliterate({ force: true }).catch(() => undefined);
      await q.close();
    }
    await events?.close();
    await queue?.close();
    await connection?.quit();
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
    expect(result.checkpointDir).toBe(path.join(stateDir, 'checkpoints', 'sft-sft-a'));

    const ck = await loadCheckpoint(result.checkpointDir);
    expect(ck.spec.vocabSize).toBe(512);
    expect(ck.weights.size).toBeGreaterThan(0);

    // The trainer closes the embedded store after registering, so this process can open it.
    const store = await openStore({ kind: 'pglite', dataDir: path.join(stateDir, 'store') });
    try {
      const version = await findModelVersion(store.db, result.versionId);
      expect(version).toMatchObject({ role: 'policy', status: 'candidate', checkpoint: result.checkpointDir, training_run_id: result.trainingRunId });
      expect(version?.metrics).toMatchObject({ heldout_loss_before: result.heldoutLossBefore, heldout_loss_after: result.heldoutLossAfter });
      const runRow = await store.db.selectFrom('training_runs').selectAll().where('id', '=', result.trainingRunId).executeTakeFirst();
      expect(runRow).toMatchObject({ kind: 'sft', status: 'succeeded', export_id: EXPORT_ID });
      // Every step's metrics are the run's series (the admin UI's curves).
      const detail = await getTrainingRunDetail(store.db, result.trainingRunId);
      expect(detail?.series.map((p) => p.step)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
      expect(detail?.series[29].metrics.loss).toBeCloseTo(seen[seen.length - 1].loss, 10);
      expect(Object.keys(detail?.series[0].metrics ?? {}).sort()).toEqual(['gradNorm', 'loss', 'lr', 'tokensPerS']);
    } finally {
      await store.close();
    }
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
