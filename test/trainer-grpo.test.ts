/**
 * The BullMQ `grpo` job (here as RLOO) on the compiled trainer and reward service: a private nats-server (the job
 * publishes its version to the `checkpoints` object store), the machine's Redis under a prefix of this run, the
 * embedded Postgres. The trainer is killed with SIGKILL after the job's first checkpoint and started again; the job
 * resumes from that checkpoint and ends with weights byte-identical to the same run done in one go in this process
 * with the same reward model. Also: per-step progress carries every group metric, the run's curves are in the store,
 * and the version is published with its lineage.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue, QueueEvents, type Job } from 'bullmq';
import IORedis from 'ioredis';
import type { NatsConnection } from 'nats';
import { grpoJobResultSchema, grpoStepMetricsSchema, QUEUES, type GrpoJobDataInput } from '@flywheel/contracts';
import { kernelsReference } from '@flywheel/kernels';
import { connectMesh, drainQuietly, findPublished } from '@flywheel/mesh';
import { createRewardScorer, loadCheckpoint, writeHfCheckpoint } from '@flywheel/model';
import { parsePrompts, runGrpo, splitPrompts } from '@flywheel/rl';
import { getTrainingRunDetail, openStore, startLockedEmbeddedPostgres, type EmbeddedPostgres } from '@flywheel/store';
import { freePort, getJson, portsEnv, repoRoot, run, serviceEntry, stop, waitFor, type Running } from './support/processes';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const MODEL = path.join(repoRoot, 'models', 'stories260K');
jest.setTimeout(240_000);

describe('grpo job (RLOO) on the compiled trainer (kill -9 and resume)', () => {
  const prefix = `fwtest-grpo-${process.pid}-${Date.now()}`;
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'flywheel-grpo-'));
  const rmDir = path.join(stateDir, 'rm');
  const promptsFile = path.join(stateDir, 'prompts.jsonl');
  let nats: ChildProcess;
  let nc: NatsConnection;
  let reward: Running | undefined;
  let trainer: Running | undefined;
  let env: Record<string, string>;
  let connection: IORedis;
  let queue: Queue;
  let events: QueueEvents;
  let eventsConnection: IORedis;
  let embedded: EmbeddedPostgres;

  const startTrainer = async (): Promise<Running> => {
    const r = run(process.execPath, [serviceEntry('trainer')], env);
    await waitFor(async () => ((await getJson(`http://127.0.0.1:${env.FLYWHEEL_TRAINER_PORT}/readyz`)).status === 200 ? true : undefined), 30_000, 'trainer ready');
    return r;
  };

  beforeAll(async () => {
    // A reward model: the policy's trunk with a fixed random scalar head (its scores only need to be deterministic).
    const base = await loadCheckpoint(MODEL);
    const rng = kernelsReference.makeRng(7);
    const weights = new Map(base.weights);
    weights.set('score.weight', Float32Array.from({ length: base.spec.hiddenSize }, () => (rng() - 0.5) * 0.5));
    await writeHfCheckpoint(rmDir, { spec: base.spec, weights, scoreLabels: 1, baseConfig: JSON.parse(readFileSync(path.join(MODEL, 'config.json'), 'utf8')), tokenizerDir: MODEL });
    const animals = ['dog', 'cat', 'bird', 'frog', 'duck', 'bear', 'fish', 'bunny'];
    writeFileSync(promptsFile, animals.map((a) => JSON.stringify({ prompt: [{ role: 'user', content: `Tell me a story about a ${a}.` }] })).join('\n') + '\n');

    const natsPort = await freePort();
    nats = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(natsPort), '-sd', path.join(stateDir, 'nats')], { stdio: 'ignore' });
    const natsUrl = `nats://127.0.0.1:${natsPort}`;
    nc = await waitFor(() => connectMesh({ servers: [natsUrl], name: 'grpo-test' }), 10_000, 'private nats-server');
    embedded = await startLockedEmbeddedPostgres({ dataDir: path.join(stateDir, 'store') });
    env = {
      ...(await portsEnv()),
      NATS_URL: natsUrl,
      REDIS_URL,
      DATABASE_URL: embedded.url,
      FLYWHEEL_STATE_DIR: stateDir,
      FLYWHEEL_QUEUE_PREFIX: prefix,
      FLYWHEEL_TRAINER_LOCK_MS: '2000',
      FLYWHEEL_TRAINER_THREADS: '2',
      FLYWHEEL_REWARD_THREADS: '2',
      FLYWHEEL_REWARD_MODEL: rmDir,
      FLYWHEEL_REWARD_VERSION: 'rm-test',
      FLYWHEEL_LOOP_MIN_NEW_APPROVED: '0',
    };
    reward = run(process.execPath, [serviceEntry('reward')], env);
    await waitFor(async () => ((await getJson(`http://127.0.0.1:${env.FLYWHEEL_REWARD_PORT}/readyz`)).status === 200 ? true : undefined), 30_000, 'reward ready');
    connection = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
    queue = new Queue(QUEUES.grpo, { connection, prefix });
    eventsConnection = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
    events = new QueueEvents(QUEUES.grpo, { connection: eventsConnection, prefix });
    await events.waitUntilReady();
    trainer = await startTrainer();
  });

  afterAll(async () => {
    await stop(trainer);
    await stop(reward);
    await drainQuietly(nc);
    nats?.kill('SIGTERM');
    for (const name of Object.values(QUEUES)) {
      const q = new Queue(name, { connection, prefix });
      await q.obliterate({ force: true }).catch(() => undefined);
      await q.close();
    }
    await events?.close();
    await eventsConnection?.quit().catch(() => undefined);
    await queue?.close();
    await connection?.quit();
    await embedded?.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('resumes after SIGKILL from its last checkpoint and ends where an uninterrupted run ends', async () => {
    const config = { algorithm: 'rloo' as const, steps: 6, promptsPerStep: 4, groupSize: 3, miniBatch: 6, maxNewTokens: 16, lr: 1e-4, seed: 5, checkpointEvery: 2 };
    const data: GrpoJobDataInput = { modelDir: MODEL, prompts: { kind: 'jsonl', path: promptsFile }, heldout: 0.25, config, rewardVersion: 'rm-test', baseVersion: 'base', exportIds: [] };
    const job: Job = await queue.add('grpo', data);
    const killed = trainer!;
    await waitFor(async () => (/checkpoint at step 2/.test(killed.output()) ? true : undefined), 120_000, 'the first checkpoint');
    await stop(killed, 'SIGKILL');
    expect(/step 6\/6/.test(killed.output())).toBe(false);

    trainer = await startTrainer();
    const result = grpoJobResultSchema.parse(await job.waitUntilFinished(events, 180_000));
    expect(result).toMatchObject({ algorithm: 'rloo', steps: 6 });
    expect(result.heldoutPrompts).toHaveLength(2);
    expect(result.resumedFromStep).toBeGreaterThanOrEqual(2);
    expect(result.resumedFromStep % 2).toBe(0);
    expect(trainer.output()).toMatch(new RegExp(`resuming from step ${result.resumedFromStep}`));
    expect(grpoStepMetricsSchema.parse((await queue.getJob(job.id!))?.progress)).toMatchObject({ step: 6, steps: 6 });

    // The run's curves are in the store, one point per step.
    const store = await openStore({ url: embedded.url });
    try {
      const detail = await getTrainingRunDetail(store.db, result.trainingRunId);
      expect(detail).toMatchObject({ kind: 'grpo', status: 'succeeded' });
      expect(detail!.series.map((p) => p.step)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(typeof detail!.series[5].metrics.group_reward_std).toBe('number');
    } finally {
      await store.close();
    }

    // The same run in one go, scored by the same reward model in this process.
    const scorer = createRewardScorer(await loadCheckpoint(rmDir), { threads: 2 });
    const straight = path.join(stateDir, 'straight');
    try {
      const prompts = splitPrompts(parsePrompts(readFileSync(promptsFile, 'utf8'), 'prompts'), 0.25, config.seed).train;
      await runGrpo({ policyDir: MODEL, prompts, score: (pairs) => scorer.score(pairs), outDir: straight, config, threads: 2 });
    } finally {
      scorer.free();
    }
    const resumed = readFileSync(path.join(result.checkpointDir, 'model.safetensors'));
    expect(resumed.equals(readFileSync(path.join(straight, 'model.safetensors')))).toBe(true);

    const published = await findPublished(nc, result.versionId);
    expect(published).toMatchObject({ role: 'policy', parent: 'base', runId: result.versionId });
  });

  it('trains on verifiable rewards alone: the reward service checks each answer against its prompt\'s reference column', async () => {
    const mathFile = path.join(stateDir, 'math.jsonl');
    const sums = [[2, 3], [4, 1], [3, 3], [5, 2], [1, 1], [6, 2]];
    writeFileSync(mathFile, sums.map(([a, b]) => JSON.stringify({ prompt: `What is ${a} plus ${b}?`, answer: a + b })).join('\n') + '\n');
    const data: GrpoJobDataInput = {
      modelDir: MODEL,
      prompts: { kind: 'jsonl', path: mathFile },
      heldout: 0,
      config: { algorithm: 'grpo', steps: 2, promptsPerStep: 3, groupSize: 3, miniBatch: 9, maxNewTokens: 12, seed: 2, checkpointEvery: 0 },
      rewards: { model: 0, functions: [{ name: 'correct', kind: 'numeric', reference: 'answer', weight: 2 }, { name: 'words', kind: 'length', unit: 'words', max: 6 }] },
      baseVersion: 'base',
      exportIds: [],
    };
    const job: Job = await queue.add('grpo', data);
    const result = grpoJobResultSchema.parse(await job.waitUntilFinished(events, 120_000));
    const progress = grpoStepMetricsSchema.parse((await queue.getJob(job.id!))?.progress);
    expect(Object.keys(progress.rewards ?? {}).sort()).toEqual(['correct', 'words']);
    expect(progress.rewards!.correct).toBeGreaterThanOrEqual(0);
    expect(progress.rewards!.correct).toBeLessThanOrEqual(1);
    // reward = 2 × correct + words, so its mean is exactly that combination of the parts' means.
    expect(progress.reward_mean).toBeCloseTo(2 * progress.rewards!.correct + progress.rewards!.words, 9);
    const store = await openStore({ url: embedded.url });
    try {
      const detail = await getTrainingRunDetail(store.db, result.trainingRunId);
      expect(detail!.series.map((p) => p.step)).toEqual([1, 2]);
      expect(typeof detail!.series[1].metrics.reward_correct).toBe('number');
      expect(typeof detail!.series[1].metrics.reward_words).toBe('number');
    } finally {
      await store.close();
    }
  });
});
