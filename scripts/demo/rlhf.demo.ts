/**
 * `npm run demo:rlhf [-- --json] [--seed N] [--keep]`: the whole RL loop on stories260K through the real services.
 * It starts a private NATS (JetStream) and Redis, a throwaway Postgres database when one is reachable (else the
 * embedded store), and all five compiled services; writes the synthetic preference set (happy-endings.ts: a story
 * that ends happily beats the same story ending sadly); asks the trainer over `trainer.loop` for one loop run on
 * it (reward-train → publish + activate the reward model → PPO scored by the reward service → eval against the
 * active policy → promotion through the `models` KV); waits for the policy replica to hot-swap; and serves a chat
 * completion from the new version through the gateway. Prints progress on stderr and, with --json, one JSON object
 * on stdout. Exit 0 when the loop ran and the new version served the request; `targets_met` says whether the
 * issue's targets (reward gain ≥ 1 std, KL ≤ 5 nats, < 10 minutes) were met.
 */
import { existsSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Queue } from 'bullmq';
import IORedis from 'ioredis';
import { loopJobResultSchema, loopStatusSchema, ppoStepMetricsSchema, QUEUES, SERVICE_NAMES, SUBJECTS, type LoopStartRequest, type LoopStatus, type ServiceName } from '@flywheel/contracts';
import { connectMesh, drainQuietly, MeshClient } from '@flywheel/mesh';
import { createThrowawayDatabase, type ThrowawayDatabase } from '@flywheel/store';
import { ensureInfra, NATS_SPEC, REDIS_SPEC } from '../launcher/infra';
import { happyEndingPreferences, PREFERENCE_RULE } from './happy-endings';

const repoRoot = path.resolve(__dirname, '..', '..', '..');
const args = parseArgs({ options: { json: { type: 'boolean', default: false }, seed: { type: 'string', default: '1' }, keep: { type: 'boolean', default: false } } }).values;
const seed = Number(args.seed);
const started = Date.now();
const log = (msg: string) => process.stderr.write(`[demo ${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s] ${msg}\n`);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no free port'))));
    });
  });
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
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

/** A throwaway database on a reachable Postgres, or null (the services then use the embedded store). */
async function throwawayDatabase(): Promise<ThrowawayDatabase | null> {
  try {
    return await createThrowawayDatabase(process.env.FLYWHEEL_DEMO_DATABASE_URL || 'postgresql://postgres@127.0.0.1:5432/postgres');
  } catch {
    return null;
  }
}

async function main(): Promise<number> {
  const shared = path.resolve(repoRoot, '..', 'shared', 'models', 'stories260K-hf');
  const baseModel = existsSync(path.join(shared, 'config.json')) ? shared : path.join(repoRoot, 'models', 'stories260K');
  const work = mkdtempSync(path.join(os.tmpdir(), 'flywheel-demo-'));
  const children: ChildProcess[] = [];
  let infraCount = 0;
  let db: ThrowawayDatabase | null = null;
  let redis: IORedis | null = null;
  let nc: Awaited<ReturnType<typeof connectMesh>> | null = null;
  try {
    // ---- infrastructure: private NATS and Redis, a throwaway database when Postgres is here
    const natsUrl = `nats://127.0.0.1:${await freePort()}`;
    const redisUrl = `redis://127.0.0.1:${await freePort()}`;
    for (const spec of [NATS_SPEC(natsUrl), REDIS_SPEC(redisUrl)]) {
      const r = await ensureInfra(spec, path.join(work, 'infra'));
      if (r.kind === 'missing') throw new Error(r.message);
      if (r.kind === 'started') children.push(r.child);
    }
    infraCount = children.length;
    db = await throwawayDatabase();
    log(`NATS ${natsUrl}, Redis ${redisUrl}, store ${db ? 'a throwaway Postgres database' : 'embedded PGlite'}; base policy ${baseModel}`);

    // ---- the five services
    const apiKey = `sk-demo-${randomBytes(12).toString('hex')}`;
    const ports = Object.fromEntries(await Promise.all(SERVICE_NAMES.map(async (s) => [s, await freePort()] as const))) as Record<ServiceName, number>;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      NO_COLOR: '1',
      NATS_URL: natsUrl,
      REDIS_URL: redisUrl,
      FLYWHEEL_STATE_DIR: path.join(work, 'state'),
      FLYWHEEL_QUEUE_PREFIX: 'demo',
      FLYWHEEL_API_KEYS: apiKey,
      FLYWHEEL_MODEL: baseModel,
      FLYWHEEL_POLICY_VERSION: 'base',
      FLYWHEEL_LOOP_MIN_NEW_APPROVED: '0',
      ...Object.fromEntries(SERVICE_NAMES.map((s) => [`FLYWHEEL_${s.toUpperCase()}_PORT`, String(ports[s])])),
    };
    if (db) env.DATABASE_URL = db.url;
    else delete env.DATABASE_URL;
    mkdirSync(path.join(work, 'logs'), { recursive: true });
    for (const s of SERVICE_NAMES) {
      // The embedded store is one process's: without Postgres the gateway keeps its own (runs stay in the trainer's).
      const own = !db && s === 'gateway' ? { FLYWHEEL_STATE_DIR: path.join(work, 'state-gateway') } : {};
      const out = openSync(path.join(work, 'logs', `${s}.log`), 'a');
      children.push(spawn(process.execPath, [path.join(repoRoot, 'dist', 'apps', s, 'src', 'main.js')], { cwd: repoRoot, env: { ...env, ...own }, stdio: ['ignore', out, out] }));
    }
    await Promise.all(
      SERVICE_NAMES.map((s) => waitFor(`${s} to be ready (logs in ${path.join(work, 'logs')})`, 120_000, async () => ((await fetch(`http://127.0.0.1:${ports[s]}/readyz`, { signal: AbortSignal.timeout(2000) })).ok ? true : undefined))),
    );
    log('all five services are ready');

    // ---- the preference set and one loop run on it
    const prefs = happyEndingPreferences(160);
    const prefsFile = path.join(work, 'preferences.jsonl');
    writeFileSync(prefsFile, prefs.map((p) => JSON.stringify(p)).join('\n') + '\n');
    log(`${prefs.length} synthetic preference pairs (${PREFERENCE_RULE}) → ${prefsFile}`);
    nc = await connectMesh({ servers: [natsUrl], name: 'rlhf-demo' });
    const mesh = new MeshClient(nc);
    const request: LoopStartRequest = {
      action: 'start',
      data: { kind: 'jsonl', path: prefsFile },
      overrides: {
        rewardTrain: { steps: 60, lr: 3e-3, batchSize: 16, heldout: 0.2, seed },
        minRewardAccuracy: 0.85,
        ppo: { steps: 10, rolloutBatch: 128, miniBatch: 32, lr: 5e-5, klCoef: 0.1, klTarget: null, maxNewTokens: 32, stop: ['.'], seed, checkpointEvery: 4 },
        heldout: 0.2,
        eval: { samples: 8, gate: { minRewardGainStd: 0.5, maxKl: 5, maxFlagRateIncrease: 0.05 }, promote: true },
      },
    };
    const first = await mesh.request(SUBJECTS.trainer.loop, request, loopStatusSchema, { timeoutMs: 30_000, retryUndeliveredMs: 10_000 });
    const runId = first.running?.runId;
    if (!runId) throw new Error(`the trainer did not start a loop run: ${first.message ?? 'no reason given'}`);
    log(`${runId} started`);

    // ---- follow it: stages from trainer.loop, PPO steps from the ppo job's progress
    redis = new IORedis(redisUrl, { maxRetriesPerRequest: null });
    const loopQueue = new Queue(QUEUES.loop, { connection: redis, prefix: 'demo' });
    const ppoQueue = new Queue(QUEUES.ppo, { connection: redis, prefix: 'demo' });
    let stage = '';
    let ppoStep = 0;
    const status: LoopStatus = await waitFor('the loop run to finish', 15 * 60_000, async () => {
      const s = await mesh.request(SUBJECTS.trainer.loop, { action: 'status' }, loopStatusSchema, { timeoutMs: 10_000, retryUndeliveredMs: 5_000 });
      if (s.running && s.running.stage !== stage) log(`stage ${(stage = s.running.stage)}`);
      const ppo = await ppoQueue.getJob(`${runId}-ppo`);
      const p = ppoStepMetricsSchema.safeParse(ppo?.progress);
      if (p.success && p.data.step !== ppoStep) {
        ppoStep = p.data.step;
        const bar = '#'.repeat(Math.round((20 * p.data.step) / p.data.steps)).padEnd(20, '.');
        log(`ppo [${bar}] ${p.data.step}/${p.data.steps} reward ${p.data.reward_mean.toFixed(3)}±${p.data.reward_std.toFixed(3)} kl ${p.data.kl.toFixed(3)} clip ${p.data.clip_fraction.toFixed(3)}`);
      }
      return s.running === null && s.lastRun?.runId === runId ? s : undefined;
    });
    const job = await loopQueue.getJob(/^loop-(\d+)-/.exec(runId)?.[1] ?? '');
    if (!job || status.lastRun?.status !== 'succeeded') throw new Error(`${runId} ${status.lastRun?.status ?? 'vanished'}: ${job?.failedReason ?? 'see the trainer log'} (logs in ${path.join(work, 'logs')})`);
    const result = loopJobResultSchema.parse(job.returnvalue);
    await loopQueue.close();
    await ppoQueue.close();
    if (!result.eval) throw new Error(`${runId} stopped early: ${result.stoppedBecause ?? 'no eval'}`);
    const report = result.eval.report;
    log(`eval: reward ${report.reward_before.toFixed(3)}±${report.reward_std_before.toFixed(3)} → ${report.reward_after.toFixed(3)} (${report.reward_gain_std.toFixed(2)} std), KL ${report.kl.toFixed(3)} nats; ${result.promoted ? `promoted ${result.candidateVersion}` : `not promoted (${result.eval.reasons.join('; ')})`}`);

    // ---- a request served by the new version (the policy replica hot-swaps on the KV write)
    const prompt = result.eval.report.examples[0]?.prompt ?? 'Tell me a story about Lily and the dog.';
    const want = result.promoted ? result.candidateVersion : result.baseVersion;
    const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
    const served = await waitFor(`the policy to serve ${want}`, 60_000, async () => {
      const models = (await (await fetch(`http://127.0.0.1:${ports.gateway}/v1/models`, { headers, signal: AbortSignal.timeout(10_000) })).json()) as { data?: { id: string }[] };
      const model = models.data?.[0]?.id;
      if (!model) return undefined;
      const res = await fetch(`http://127.0.0.1:${ports.gateway}/v1/chat/completions`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ model, messages: [{ role: 'user', content: prompt }], max_tokens: 48, seed }),
        signal: AbortSignal.timeout(30_000),
      });
      const body = (await res.json()) as { system_fingerprint?: string; choices?: { message?: { content?: string } }[] };
      return res.ok && body.system_fingerprint === want ? { version: want, prompt, text: body.choices?.[0]?.message?.content ?? '' } : undefined;
    });
    log(`served by ${served.version}: ${JSON.stringify(served.text)}`);

    const minutes = (Date.now() - started) / 60_000;
    const gain = report.reward_after - report.reward_before;
    const out = {
      rm_heldout_accuracy: result.rewardAccuracy,
      reward_before: report.reward_before,
      reward_after: report.reward_after,
      reward_std_before: report.reward_std_before,
      kl: report.kl,
      promoted_version: result.promoted ? result.candidateVersion : null,
      minutes,
      reward_gain_std: report.reward_gain_std,
      targets_met: { reward_gain: gain >= report.reward_std_before, kl: report.kl <= 5, minutes: minutes < 10, rm_accuracy: (result.rewardAccuracy ?? 0) >= 0.85 },
      rule: PREFERENCE_RULE,
      seed,
      loop_run: runId,
      reward_version: result.rewardVersion,
      base_version: result.baseVersion,
      eval_samples: report.prompts * report.samples,
      served,
    };
    process.stdout.write(args.json ? JSON.stringify(out) + '\n' : JSON.stringify(out, null, 2) + '\n');
    return 0;
  } finally {
    await drainQuietly(nc);
    await redis?.quit().catch(() => undefined);
    // Services first, then NATS and Redis (a service shutting down still talks to them); SIGKILL after 20 s.
    const infra = children.slice(0, infraCount);
    for (const group of [children.slice(infraCount), infra]) {
      await Promise.all(
        group.map((c) => {
          if (c.exitCode !== null || c.signalCode !== null) return undefined;
          const kill = setTimeout(() => c.kill('SIGKILL'), 20_000);
          c.kill('SIGTERM');
          return new Promise((r) => c.once('exit', () => r(clearTimeout(kill))));
        }),
      );
    }
    await db?.drop().catch((err: unknown) => log(`could not drop the demo database: ${String(err)}`));
    if (args.keep) log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`demo:rlhf: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
