/**
 * The whole mesh on private infrastructure for the demo scripts (rlhf.demo.ts, loop-default.bench.ts): a private
 * NATS (JetStream) and Redis, a throwaway Postgres database when one is reachable (else the embedded Postgres),
 * the five compiled services with their logs in a scratch folder; and following one loop run over `trainer.loop`
 * to its end, stage by stage. Not a launcher (scripts/launcher) and not for tests (test/support).
 */
import { mkdirSync, openSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import path from 'node:path';
import { Queue } from 'bullmq';
import IORedis from 'ioredis';
import {
  grpoStepMetricsSchema,
  loopJobResultSchema,
  loopStatusSchema,
  ppoStepMetricsSchema,
  QUEUES,
  rewardTrainJobResultSchema,
  SERVICE_NAMES,
  SUBJECTS,
  type GrpoStepMetrics,
  type LoopJobResult,
  type LoopStatus,
  type PpoStepMetrics,
  type RewardTrainJobResult,
  type ServiceName,
} from '@flywheel/contracts';
import type { MeshClient } from '@flywheel/mesh';
import { startLockedEmbeddedPostgres, type EmbeddedPostgres } from '@flywheel/store';
import { createThrowawayDatabase, type ThrowawayDatabase } from '@flywheel/store/testing';
import { ensureInfra, NATS_SPEC, REDIS_SPEC } from '../launcher/infra';

export const repoRoot = path.resolve(__dirname, '..', '..', '..');

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no free port'))));
    });
  });
}

/** Polls `probe` every 500 ms until it returns a value; a throw counts as "not yet" (its message ends up in the timeout error). */
export async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`timed out waiting for ${what}${last ? ` (${last})` : ''}`);
}

/** A throwaway database on a reachable Postgres, or null (the demo then runs the embedded Postgres). */
async function throwawayDatabase(): Promise<ThrowawayDatabase | null> {
  try {
    return await createThrowawayDatabase(process.env.FLYWHEEL_DEMO_DATABASE_URL || 'postgresql://postgres@127.0.0.1:5432/postgres');
  } catch {
    return null;
  }
}

export interface DemoMeshOptions {
  /** Scratch folder: infrastructure data, the services' state dir, logs. The caller removes it. */
  work: string;
  /** BullMQ prefix of the trainer's queues. */
  queuePrefix: string;
  /** Service settings on top of the infrastructure's (model, loop triggers); nothing else is overridden. */
  env: NodeJS.ProcessEnv;
  log: (msg: string) => void;
}

export interface DemoMesh {
  natsUrl: string;
  redisUrl: string;
  databaseUrl: string;
  store: 'a throwaway Postgres database' | 'the embedded Postgres';
  apiKey: string;
  ports: Record<ServiceName, number>;
  logsDir: string;
  /** Services first, then NATS and Redis (a service shutting down still talks to them), then the database. */
  stop(): Promise<void>;
}

/** SIGTERM, then SIGKILL after 20 s. */
async function stopChildren(children: ChildProcess[]): Promise<void> {
  await Promise.all(
    children.map((c) => {
      if (c.exitCode !== null || c.signalCode !== null) return undefined;
      const kill = setTimeout(() => c.kill('SIGKILL'), 20_000);
      c.kill('SIGTERM');
      return new Promise((r) => c.once('exit', () => r(clearTimeout(kill))));
    }),
  );
}

/** Starts infrastructure and the five services and waits until every one is ready; on failure stops what it started. */
export async function startDemoMesh(o: DemoMeshOptions): Promise<DemoMesh> {
  const infra: ChildProcess[] = [];
  const services: ChildProcess[] = [];
  let db: ThrowawayDatabase | null = null;
  let embedded: EmbeddedPostgres | null = null;
  const stop = async () => {
    await stopChildren(services);
    await stopChildren(infra);
    await db?.drop().catch((err: unknown) => o.log(`could not drop the demo database: ${String(err)}`));
    await embedded?.stop();
  };
  try {
    const natsUrl = `nats://127.0.0.1:${await freePort()}`;
    const redisUrl = `redis://127.0.0.1:${await freePort()}`;
    for (const spec of [NATS_SPEC(natsUrl), REDIS_SPEC(redisUrl)]) {
      const r = await ensureInfra(spec, path.join(o.work, 'infra'));
      if (r.kind === 'missing') throw new Error(r.message);
      if (r.kind === 'started') infra.push(r.child);
    }
    db = await throwawayDatabase();
    if (!db) embedded = await startLockedEmbeddedPostgres({ dataDir: path.join(o.work, 'state', 'store') });
    const databaseUrl = db?.url ?? embedded!.url;
    const store = db ? 'a throwaway Postgres database' : 'the embedded Postgres';

    const apiKey = `sk-demo-${randomBytes(12).toString('hex')}`;
    const ports = Object.fromEntries(await Promise.all(SERVICE_NAMES.map(async (s) => [s, await freePort()] as const))) as Record<ServiceName, number>;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      NO_COLOR: '1',
      NATS_URL: natsUrl,
      REDIS_URL: redisUrl,
      DATABASE_URL: databaseUrl,
      FLYWHEEL_STATE_DIR: path.join(o.work, 'state'),
      FLYWHEEL_QUEUE_PREFIX: o.queuePrefix,
      FLYWHEEL_API_KEYS: apiKey,
      ...Object.fromEntries(SERVICE_NAMES.map((s) => [`FLYWHEEL_${s.toUpperCase()}_PORT`, String(ports[s])])),
      ...o.env,
    };
    const logsDir = path.join(o.work, 'logs');
    mkdirSync(logsDir, { recursive: true });
    for (const s of SERVICE_NAMES) {
      const out = openSync(path.join(logsDir, `${s}.log`), 'a');
      services.push(spawn(process.execPath, [path.join(repoRoot, 'dist', 'apps', s, 'src', 'main.js')], { cwd: repoRoot, env, stdio: ['ignore', out, out] }));
    }
    await Promise.all(
      SERVICE_NAMES.map((s) => waitFor(`${s} to be ready (logs in ${logsDir})`, 120_000, async () => ((await fetch(`http://127.0.0.1:${ports[s]}/readyz`, { signal: AbortSignal.timeout(2000) })).ok ? true : undefined))),
    );
    return { natsUrl, redisUrl, databaseUrl, store, apiKey, ports, logsDir, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface FollowedLoopRun {
  result: LoopJobResult;
  status: LoopStatus;
  /** When each stage was first seen running (ms since the epoch), in order; the run's end as `done`. */
  stages: { stage: string; at: number }[];
  /** The PPO stage's per-step metrics as its job reported them (the last one seen per step). */
  ppoSteps: PpoStepMetrics[];
  /** The same for a group method's stage (grpo, rloo, reinforce++, rft, online-dpo); empty for a PPO run. */
  groupSteps: GrpoStepMetrics[];
  /**
   * The run's independent reward model (its `<run>-rm-independent` reward-train job, with `independentRm`), null when
   * the run trained none. It scored the eval only when its held-out accuracy reached minRewardAccuracy.
   */
  independentRm: RewardTrainJobResult | null;
}

/** The step metrics both policy jobs report and the demo logs. */
type StepLine = Pick<PpoStepMetrics, 'step' | 'steps' | 'reward_mean' | 'reward_std' | 'kl' | 'clip_fraction'>;

/**
 * Follows loop run `runId` to its end by polling `trainer.loop` status (as the admin UI does) and the ppo or grpo
 * job's progress every 500 ms, logging each new stage and policy step. Throws when the run fails or does not finish within
 * `timeoutMs`; returns the loop job's result.
 */
export async function followLoopRun(o: { mesh: MeshClient; redisUrl: string; queuePrefix: string; runId: string; timeoutMs: number; log: (msg: string) => void; logsDir: string }): Promise<FollowedLoopRun> {
  const redis = new IORedis(o.redisUrl, { maxRetriesPerRequest: null });
  const loopQueue = new Queue(QUEUES.loop, { connection: redis, prefix: o.queuePrefix });
  const ppoQueue = new Queue(QUEUES.ppo, { connection: redis, prefix: o.queuePrefix });
  const grpoQueue = new Queue(QUEUES.grpo, { connection: redis, prefix: o.queuePrefix });
  const rmQueue = new Queue(QUEUES.rewardTrain, { connection: redis, prefix: o.queuePrefix });
  try {
    const stages: { stage: string; at: number }[] = [];
    const ppoSteps: PpoStepMetrics[] = [];
    const groupSteps: GrpoStepMetrics[] = [];
    /** Appends and logs a policy job's progress when it is a new step (the grpo queue runs every group method). */
    const logNewStep = <M extends StepLine>(label: string, p: { success: true; data: M } | { success: false }, seen: M[]): void => {
      if (!p.success || p.data.step === seen[seen.length - 1]?.step) return;
      const m = p.data;
      seen.push(m);
      const bar = '#'.repeat(Math.round((20 * m.step) / m.steps)).padEnd(20, '.');
      o.log(`${label} [${bar}] ${m.step}/${m.steps} reward ${m.reward_mean.toFixed(3)}±${m.reward_std.toFixed(3)} kl ${m.kl.toFixed(3)} clip ${m.clip_fraction.toFixed(3)}`);
    };
    const status: LoopStatus = await waitFor('the loop run to finish', o.timeoutMs, async () => {
      const s = await o.mesh.request(SUBJECTS.trainer.loop, { action: 'status' }, loopStatusSchema, { timeoutMs: 10_000, retryUndeliveredMs: 5_000 });
      const stage = s.running?.runId === o.runId ? s.running.stage : null;
      if (stage !== null && stage !== stages[stages.length - 1]?.stage) {
        stages.push({ stage, at: Date.now() });
        o.log(`stage ${stage}`);
      }
      // Every tick, whatever the stage: a step reported just before the stage moves on is still seen.
      logNewStep('ppo', ppoStepMetricsSchema.safeParse((await ppoQueue.getJob(`${o.runId}-ppo`))?.progress), ppoSteps);
      logNewStep('grpo', grpoStepMetricsSchema.safeParse((await grpoQueue.getJob(`${o.runId}-grpo`))?.progress), groupSteps);
      return s.running === null && s.lastRun?.runId === o.runId ? s : undefined;
    });
    stages.push({ stage: 'done', at: Date.now() });
    const job = await loopQueue.getJob(/^loop-(\d+)-/.exec(o.runId)?.[1] ?? '');
    if (!job || status.lastRun?.status !== 'succeeded') throw new Error(`${o.runId} ${status.lastRun?.status ?? 'vanished'}: ${job?.failedReason ?? 'see the trainer log'} (logs in ${o.logsDir})`);
    const independent = await rmQueue.getJob(`${o.runId}-rm-independent`);
    const independentRm = independent?.returnvalue ? rewardTrainJobResultSchema.parse(independent.returnvalue) : null;
    return { result: loopJobResultSchema.parse(job.returnvalue), status, stages, ppoSteps, groupSteps, independentRm };
  } finally {
    await loopQueue.close();
    await ppoQueue.close();
    await grpoQueue.close();
    await rmQueue.close();
    await redis.quit().catch(() => undefined);
  }
}
