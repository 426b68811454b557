/**
 * The RL loop's control on the compiled trainer: `trainer.loop` status / pause / resume / start over a PRIVATE
 * nats-server (a loop run publishes versions to the `models` KV, which other suites' services on the machine's
 * NATS would pick up), the machine's Redis under a prefix of this run, and a throwaway Postgres database.
 * Checks: the status reflects the config; start with nothing approved explains itself; while paused, approved
 * pairs past the threshold start nothing; on resume the trigger exports them and queues a loop run whose first
 * stage is a moderation-train job on the reviewers' moderation label, then the SFT warm start on the approved answer,
 * then a reward-train job on that export. And a whole (tiny) loop run with `independentRm: {}`, beside the reward and
 * moderation services: the pairs split by prompt, the reward model on one side and the independent one
 * (`rm-<run>-rm-independent`) on the other, published but never active, and handed to the eval, whose report, run and
 * lineage carry its gain. The demo-sized loop (reward model → PPO → eval → promotion) runs in test/rl-demo.test.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import IORedis from 'ioredis';
import type { NatsConnection } from 'nats';
import {
  evalJobDataSchema,
  loopJobDataSchema,
  loopJobResultSchema,
  loopStatusSchema,
  QUEUES,
  rewardTrainJobDataSchema,
  rewardTrainJobResultSchema,
  SUBJECTS,
  type LoopStartRequest,
  type LoopStatus,
} from '@flywheel/contracts';
import { connectMesh, drainQuietly, findPublished, MeshClient, readActive } from '@flywheel/mesh';
import { addModerationLabel, applyReview, findExport, findModelVersion, findTrainingRun, openStore, writeCompletion, writeFeedback } from '@flywheel/store';
import { completionRecord, createThrowawayDatabase, feedbackEvent, type ThrowawayDatabase } from '@flywheel/store/testing';
import { preferenceLinesOnSide } from '@flywheel/train';
import { happyEndingPreferences } from '../scripts/demo/happy-endings';
import { freePort, getJson, portsEnv, repoRoot, run, serviceEntry, stop, waitFor, type Running } from './support/processes';
import { startLoopMesh, type LoopMesh } from './support/loop-mesh';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
jest.setTimeout(300_000);

describe('trainer.loop (compiled trainer, private NATS, real Redis and Postgres)', () => {
  const prefix = `fwtest-loop-${process.pid}-${Date.now()}`;
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'flywheel-loop-'));
  let nats: ChildProcess;
  let trainer: Running | undefined;
  let nc: NatsConnection;
  let mesh: MeshClient;
  let database: ThrowawayDatabase;
  let redis: IORedis;
  let natsUrl: string;
  let env: Record<string, string>;

  const loop = (action: 'status' | 'pause' | 'resume' | 'start'): Promise<LoopStatus> =>
    mesh.request(SUBJECTS.trainer.loop, { action }, loopStatusSchema, { timeoutMs: 10_000, retryUndeliveredMs: 5_000 });

  beforeAll(async () => {
    const natsPort = await freePort();
    nats = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(natsPort), '-sd', path.join(stateDir, 'nats')], { stdio: 'ignore' });
    natsUrl = `nats://127.0.0.1:${natsPort}`;
    nc = await waitFor(() => connectMesh({ servers: [natsUrl], name: 'loop-test' }), 10_000, 'private nats-server');
    mesh = new MeshClient(nc);
    database = await createThrowawayDatabase(ADMIN_URL);
    redis = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
    env = {
      ...(await portsEnv()),
      NATS_URL: natsUrl,
      REDIS_URL,
      DATABASE_URL: database.url,
      FLYWHEEL_STATE_DIR: stateDir,
      FLYWHEEL_QUEUE_PREFIX: prefix,
      FLYWHEEL_MODEL: path.join(repoRoot, 'models', 'stories260K'),
      FLYWHEEL_LOOP_MIN_NEW_APPROVED: '2',
      FLYWHEEL_LOOP_CHECK_MS: '1000',
      FLYWHEEL_LOOP_SFT: 'auto',
    };
    trainer = run(process.execPath, [serviceEntry('trainer')], env);
    await waitFor(async () => ((await getJson(`http://127.0.0.1:${env.FLYWHEEL_TRAINER_PORT}/readyz`)).status === 200 ? true : undefined), 30_000, 'trainer ready');
  });

  afterAll(async () => {
    await stop(trainer);
    await drainQuietly(nc);
    nats?.kill('SIGTERM');
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
    await database?.drop();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('still answers when the store is out of reach, and says why', async () => {
    const env2: Record<string, string> = {
      ...(await portsEnv()),
      NATS_URL: natsUrl,
      REDIS_URL,
      DATABASE_URL: 'postgresql://postgres@127.0.0.1:1/nowhere',
      FLYWHEEL_STATE_DIR: stateDir,
      FLYWHEEL_QUEUE_PREFIX: `${prefix}-nostore`,
      FLYWHEEL_LOOP_MIN_NEW_APPROVED: '0',
    };
    // The main trainer answers too (same queue group): stop it for this check, restart after.
    await stop(trainer);
    const lone = run(process.execPath, [serviceEntry('trainer')], env2);
    try {
      await waitFor(async () => ((await getJson(`http://127.0.0.1:${env2.FLYWHEEL_TRAINER_PORT}/livez`)).status === 200 ? true : undefined), 30_000, 'trainer up');
      const s = await loop('status');
      expect(s).toMatchObject({ paused: false, running: null, approvedSinceLastRun: 0, lastRun: null });
      expect(s.message).toMatch(/store unavailable/);
      expect((await loop('start')).message).toMatch(/cannot export the approved pairs/);
    } finally {
      await stop(lone);
      trainer = run(process.execPath, [serviceEntry('trainer')], env);
      await waitFor(async () => ((await getJson(`http://127.0.0.1:${env.FLYWHEEL_TRAINER_PORT}/readyz`)).status === 200 ? true : undefined), 30_000, 'trainer ready');
    }
  });

  it('reports, pauses, refuses an empty start, and starts a run by threshold once resumed', async () => {
    const s0 = await loop('status');
    expect(s0).toMatchObject({ paused: false, running: null, approvedSinceLastRun: 0, minNewApproved: 2, scheduleMs: null, lastRun: null });

    expect((await loop('start')).message).toMatch(/no approved preference pairs/);
    expect((await loop('pause')).paused).toBe(true);

    // Two admin-labelled pairs (approved preferences) on two completions with two choices each.
    const store = await openStore({ url: database.url });
    try {
      for (const id of ['cmpl-loop-a', 'cmpl-loop-b']) {
        await writeCompletion(store.db, completionRecord(id, { messages: [{ role: 'user', content: `Tell me about ${id}` }] }));
        const r = await applyReview(store.db, 'admin-test', { action: 'choose', completion_id: id, chosen: 0, rejected: 1 });
        expect(r.ok).toBe(true);
      }
      // An approved thumbs-up: an answer the run's SFT warm start learns (FLYWHEEL_LOOP_SFT=auto).
      const up = feedbackEvent('cmpl-loop-a', { kind: 'thumbs', value: 'up', choiceIndex: 0 });
      await writeFeedback(store.db, up);
      expect(await applyReview(store.db, 'admin-test', { action: 'approve', feedback_id: up.id })).toMatchObject({ ok: true });
      // A reviewer's moderation label: the run starts with a moderation-train stage.
      expect(await addModerationLabel(store.db, 'admin-test', { completion_id: 'cmpl-loop-b', target: 'choice', choice_index: 0, verdict: 'harmful', categories: ['violence'] })).toMatchObject({ ok: true });
    } finally {
      await store.close();
    }
    expect((await loop('status')).approvedSinceLastRun).toBe(2);
    await new Promise((r) => setTimeout(r, 2_500)); // two trigger checks while paused
    expect(await loop('status')).toMatchObject({ paused: true, running: null });

    expect((await loop('resume')).paused).toBe(false);
    const running = await waitFor(async () => (await loop('status')).running ?? undefined, 15_000, 'the trigger to queue a loop run');
    expect(running.runId).toMatch(/^loop-\d+-[0-9a-z]+$/);

    const loopQueue = new Queue(QUEUES.loop, { connection: redis, prefix });
    try {
      const job = await loopQueue.getJob(/^loop-(\d+)-/.exec(running.runId)?.[1] ?? '');
      const data = loopJobDataSchema.parse(job?.data);
      expect(data.trigger).toBe('threshold');
      expect(data.data.kind).toBe('export');
      const exportId = data.data.kind === 'export' ? data.data.exportId : '';
      const store2 = await openStore({ url: database.url });
      try {
        const exp = await findExport(store2.db, exportId);
        expect(exp).toMatchObject({ format: 'preference', row_count: 2, created_by: 'trainer-loop' });
      } finally {
        await store2.close();
      }
      // Its first stage is moderation-train on a moderation export of the label, then reward-train, each under an id
      // derived from the run's.
      expect(data.moderation?.data.kind).toBe('export');
      const modQueue = new Queue(QUEUES.moderationTrain, { connection: redis, prefix });
      const modStage = await waitFor(async () => (await modQueue.getJob(`${running.runId}-mod`)) ?? undefined, 30_000, `the moderation-train stage: ${trainer?.output().slice(-4000)}`);
      expect(modStage.data).toMatchObject({ data: data.moderation?.data, parentRunId: running.runId });
      await modQueue.close();
      // Then the SFT warm start on an sft export of the approved answer, from the base policy.
      expect(data.sft?.data.kind).toBe('export');
      const sftQueue = new Queue(QUEUES.sft, { connection: redis, prefix });
      const sftStage = await waitFor(async () => (await sftQueue.getJob(`${running.runId}-sft`)) ?? undefined, 120_000, `the sft stage: ${trainer?.output().slice(-3000)}`);
      expect(sftStage.data).toMatchObject({ data: data.sft?.data, outName: `${running.runId}-sft`, steps: 30 });
      await sftQueue.close();
      const rmQueue = new Queue(QUEUES.rewardTrain, { connection: redis, prefix });
      const stage = await waitFor(async () => (await rmQueue.getJob(`${running.runId}-rm`)) ?? undefined, 180_000, 'the reward-train stage');
      expect(stage.data).toMatchObject({ data: { kind: 'export', exportId } });
      await rmQueue.close();
      // A second start while one runs is refused with the reason.
      expect((await loop('start')).message).toMatch(/already/);
    } finally {
      await loopQueue.close();
    }
  });
});

describe('a loop run with an independent reward model (compiled trainer, reward and moderation; private NATS)', () => {
  const prefix = `fwtest-loop-indep-${process.pid}-${Date.now()}`;
  const work = mkdtempSync(path.join(os.tmpdir(), 'flywheel-loop-indep-'));
  const SHARE = 0.3; // the loop's default share of prompts on the independent side
  let loopMesh: LoopMesh | undefined;
  let nc: NatsConnection;
  let mesh: MeshClient;
  let database: ThrowawayDatabase;
  let redis: IORedis;

  const logs = () => loopMesh?.logs() ?? '';

  beforeAll(async () => {
    loopMesh = await startLoopMesh({ name: 'loop-indep-test', prefix, work, stateDir: path.join(work, 'state') });
    ({ nc, mesh, database, redis } = loopMesh);
  });

  afterAll(async () => {
    await loopMesh?.close();
  });

  it('trains the second reward model on the held-out side of the prompt split, publishes it without making it active, and the eval scores with it', async () => {
    // 24 pairs on 24 prompts: 11 on the independent side of the split, 13 on the training side.
    const text = happyEndingPreferences(24).map((p) => JSON.stringify(p)).join('\n') + '\n';
    const sides = { train: preferenceLinesOnSide(text, 'train', SHARE).kept, heldout: preferenceLinesOnSide(text, 'heldout', SHARE).kept };
    expect(sides).toEqual({ train: 13, heldout: 11 });
    const prefsFile = path.join(work, 'preferences.jsonl');
    writeFileSync(prefsFile, text);
    const request: LoopStartRequest = {
      action: 'start',
      data: { kind: 'jsonl', path: prefsFile },
      overrides: {
        rewardTrain: { steps: 4, batchSize: 4, heldout: 0.25, seed: 1 },
        independentRm: {},
        minRewardAccuracy: 0, // the independent model is used whatever its accuracy: this is about the plumbing
        ppo: { steps: 1, rolloutBatch: 8, miniBatch: 8, maxNewTokens: 12, seed: 1, checkpointEvery: 0 },
        heldout: 0.25,
        // Every bound open but the independent one, set where no gain reaches: its reason shows the eval had the model.
        eval: { samples: 2, promote: true, abSamples: 0, gate: { minRewardGainStd: -1000, maxKl: 1000, maxKlBase: null, maxFlagRateIncrease: 1, minIndependentGainStd: 1000 } },
      },
    };
    const first = await mesh.request(SUBJECTS.trainer.loop, request, loopStatusSchema, { timeoutMs: 30_000, retryUndeliveredMs: 10_000 });
    const runId = first.running?.runId;
    if (!runId) throw new Error(`no loop run started: ${first.message ?? '?'}`);
    await waitFor(
      async () => {
        const s = await mesh.request(SUBJECTS.trainer.loop, { action: 'status' }, loopStatusSchema, { timeoutMs: 10_000, retryUndeliveredMs: 5_000 });
        return s.running === null && s.lastRun?.runId === runId ? s.lastRun : undefined;
      },
      120_000,
      `the loop run to finish: ${logs()}`,
    );

    const queue = (name: (typeof QUEUES)[keyof typeof QUEUES]) => new Queue(name, { connection: redis, prefix });
    const [loopQueue, rmQueue, evalQueue] = [queue(QUEUES.loop), queue(QUEUES.rewardTrain), queue(QUEUES.eval)];
    try {
      const loopJob = await loopQueue.getJob(/^loop-(\d+)-/.exec(runId)?.[1] ?? '');
      expect(loopJobDataSchema.parse(loopJob?.data).independentRm).toEqual({ share: SHARE });
      if (!loopJob?.returnvalue) throw new Error(`the loop run did not succeed: ${loopJob?.failedReason ?? '?'}\n${logs()}`);
      const result = loopJobResultSchema.parse(loopJob.returnvalue);
      const rmVersion = `rm-${runId}-rm`;
      const independentVersion = `rm-${runId}-rm-independent`;
      expect(result).toMatchObject({ loopRunId: runId, rewardVersion: rmVersion, candidateVersion: `${runId}-ppo`, promoted: false, stoppedBecause: null });

      // ---- two reward models, one per side of the split, with the run's rewardTrain settings
      const rmJobs = { train: await rmQueue.getJob(`${runId}-rm`), heldout: await rmQueue.getJob(`${runId}-rm-independent`) };
      for (const side of ['train', 'heldout'] as const) {
        expect(rewardTrainJobDataSchema.parse(rmJobs[side]?.data)).toMatchObject({ promptSide: { side, share: SHARE }, steps: 4, batchSize: 4, heldout: 0.25, seed: 1 });
        expect(rewardTrainJobResultSchema.parse(rmJobs[side]?.returnvalue)).toMatchObject({ versionId: side === 'train' ? rmVersion : independentVersion, pairs: sides[side] });
      }
      const independentRm = rewardTrainJobResultSchema.parse(rmJobs.heldout?.returnvalue);

      // ---- published as a reward version, never made active: the training one is what the reward service serves
      expect(await findPublished(nc, independentVersion)).toMatchObject({ version: independentVersion, role: 'reward', runId: independentVersion });
      expect(await readActive(nc, 'reward')).toMatchObject({ version: rmVersion });

      // ---- handed to the eval: in its job, its report, its verdict, its run and the candidate's lineage
      expect(evalJobDataSchema.parse((await evalQueue.getJob(`${runId}-eval`))?.data)).toMatchObject({ rewardVersion: rmVersion, independentRewardVersion: independentVersion });
      const ev = result.eval!;
      const independent = ev.report.independent!;
      expect(independent).toEqual({ reward_before: expect.any(Number), reward_std_before: expect.any(Number), reward_after: expect.any(Number), gain_std: expect.any(Number), gain_std_length_controlled: expect.any(Number) });
      expect(Number.isFinite(independent.gain_std)).toBe(true);
      expect(ev).toMatchObject({ pass: false, promoted: false, reasons: [`independent reward gain ${independent.gain_std.toFixed(3)} std < 1000`] });

      const store = await openStore({ url: database.url });
      try {
        expect(await findTrainingRun(store.db, independentVersion)).toMatchObject({
          kind: 'reward-train',
          status: 'succeeded',
          parentRunId: runId,
          metrics: { prompt_side: 'heldout', prompt_share: SHARE, pairs: sides.heldout },
        });
        expect(await findTrainingRun(store.db, rmVersion)).toMatchObject({ status: 'succeeded', metrics: { prompt_side: 'train', pairs: sides.train } });
        expect(await findTrainingRun(store.db, runId)).toMatchObject({
          status: 'succeeded',
          metrics: { independent_rm_version: independentVersion, independent_rm_used: true, independent_rm_heldout_accuracy: independentRm.heldoutAccuracy, independent },
        });
        expect(await findTrainingRun(store.db, `eval-${runId}-eval`)).toMatchObject({ status: 'succeeded', parentRunId: runId, metrics: { independent_reward_version: independentVersion, reward_version: rmVersion, independent } });
        expect(await findModelVersion(store.db, `${runId}-ppo`)).toMatchObject({
          status: 'rejected',
          metrics: { eval: { independent: { version: independentVersion, gain_std: independent.gain_std, gain_std_length_controlled: independent.gain_std_length_controlled }, reasons: ev.reasons } },
        });
      } finally {
        await store.close();
      }
    } finally {
      await Promise.all([loopQueue.close(), rmQueue.close(), evalQueue.close()]);
    }
  });
});
