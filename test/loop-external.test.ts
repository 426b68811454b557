/**
 * The loop's `external` stage end to end, with this repository's CLI playing the cluster: the compiled trainer,
 * reward and moderation services on a PRIVATE nats-server (the run writes the `models` KV), the machine's Redis under
 * a prefix of this run, a throwaway Postgres database. One loop run with algorithm `external` trains its reward model
 * in-process, writes the hand-off folder and waits (status stage `external` with a message naming the folder); a
 * separate `flywheel train sft` process trains on the hand-off's sft.jsonl from its base-model/, and a separate
 * `flywheel models publish --run <id> DIR` brings the result back; the loop picks it up, runs the eval gate on the
 * held-out prompts and promotes it. Checks the loop result, the runs in the store, the candidate's row with the
 * gate's verdict, and the models KV. The hand-off's file contents are apps/trainer/src/external.handoff.spec.ts.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import IORedis from 'ioredis';
import type { NatsConnection } from 'nats';
import { loopJobResultSchema, loopStatusSchema, QUEUES, SUBJECTS, type LoopStartRequest, type LoopStatus } from '@flywheel/contracts';
import { MeshClient, readActive } from '@flywheel/mesh';
import { findModelVersion, findTrainingRun, openStore } from '@flywheel/store';
import type { ThrowawayDatabase } from '@flywheel/store/testing';
import { happyEndingPreferences } from '../scripts/demo/happy-endings';
import { handoffManifestSchema } from '../apps/trainer/src/external.handoff';
import { repoRoot, run, waitFor } from './support/processes';
import { startLoopMesh, type LoopMesh } from './support/loop-mesh';

const CLI = path.join(repoRoot, 'dist', 'scripts', 'cli', 'cli.main.js');
jest.setTimeout(240_000);

/** A CLI run as its own process; its output on failure. */
async function cli(args: string[], env: Record<string, string>): Promise<string> {
  const r = run(process.execPath, [CLI, ...args], env);
  const code = await r.exited;
  if (code !== 0) throw new Error(`flywheel ${args.slice(0, 2).join(' ')} exited ${code}:\n${r.output().slice(-3000)}`);
  return r.output();
}

describe('loop stage external (compiled trainer, reward, moderation; the CLI as the cluster)', () => {
  const prefix = `fwtest-ext-${process.pid}-${Date.now()}`;
  const work = mkdtempSync(path.join(os.tmpdir(), 'flywheel-external-'));
  const stateDir = path.join(work, 'state');
  let loopMesh: LoopMesh | undefined;
  let nc: NatsConnection;
  let mesh: MeshClient;
  let database: ThrowawayDatabase;
  let redis: IORedis;
  let natsUrl: string;

  const status = (): Promise<LoopStatus> => mesh.request(SUBJECTS.trainer.loop, { action: 'status' }, loopStatusSchema, { timeoutMs: 10_000, retryUndeliveredMs: 5_000 });
  const logs = () => loopMesh?.logs() ?? '';

  beforeAll(async () => {
    loopMesh = await startLoopMesh({ name: 'loop-external-test', prefix, work, stateDir });
    ({ nc, mesh, database, redis, natsUrl } = loopMesh);
  });

  afterAll(async () => {
    await loopMesh?.close();
  });

  it('hands the approved data off, takes back the checkpoint published under its run id, evaluates and promotes it', async () => {
    const started = Date.now();
    // 16 pairs on 16 prompts (a quarter held out for the gate) and an approved answer on each prompt.
    const prefs = happyEndingPreferences(16);
    const prefsFile = path.join(work, 'preferences.jsonl');
    writeFileSync(prefsFile, prefs.map((p) => JSON.stringify(p)).join('\n') + '\n');
    const sftFile = path.join(work, 'answers.jsonl');
    writeFileSync(sftFile, prefs.map((p) => JSON.stringify({ messages: [...p.prompt, ...p.chosen] })).join('\n') + '\n');

    const request: LoopStartRequest = {
      action: 'start',
      data: { kind: 'jsonl', path: prefsFile },
      overrides: {
        algorithm: 'external',
        sft: { data: { kind: 'jsonl', path: sftFile } },
        rewardTrain: { steps: 10, batchSize: 8, heldout: 0.2, seed: 1 },
        minRewardAccuracy: 0,
        heldout: 0.25,
        ppo: { maxNewTokens: 12, seed: 1 },
        external: { pollMs: 300, waitMs: 600_000 },
        // A gate every candidate passes: this test is about the hand-off; the gate's bounds are eval-gate.test.ts.
        eval: { samples: 2, promote: true, abSamples: 0, gate: { minRewardGainStd: -1000, maxKl: 1000, maxKlBase: null, maxFlagRateIncrease: 1, minIndependentGainStd: null } },
      },
    };
    const first = await mesh.request(SUBJECTS.trainer.loop, request, loopStatusSchema, { timeoutMs: 30_000, retryUndeliveredMs: 10_000 });
    const runId = first.running?.runId;
    if (!runId) throw new Error(`no loop run started: ${first.message ?? '?'}`);

    // ---- the loop trains its reward model, writes the hand-off and waits, saying where and for what
    const handoff = path.join(stateDir, 'handoff', runId);
    const waiting = await waitFor(
      async () => {
        const s = await status();
        if (s.lastRun?.runId === runId && s.lastRun.status === 'failed') throw new Error('the loop run failed');
        return s.running?.stage === 'external' && s.running.message ? s.running : undefined;
      },
      120_000,
      `the external stage: ${logs()}`,
    );
    expect(waiting.message).toContain(handoff);
    expect(waiting.message).toContain(`flywheel models publish --run ${runId}`);
    const manifest = handoffManifestSchema.parse(JSON.parse(readFileSync(path.join(handoff, 'handoff.json'), 'utf8')));
    expect(manifest).toMatchObject({ loop_run_id: runId, base_version: 'base', heldout_prompts: 4, heldout_rows_dropped: 8 });
    expect(manifest.data).toMatchObject({ sft: { rows: 12 }, preference: { rows: 12 }, prompts: { rows: 12 } });
    for (const f of ['sft.jsonl', 'preference.jsonl', 'prompts.jsonl', 'trl/sft.yaml', 'trl/dpo.yaml', 'trl/grpo.yaml', 'openrlhf-dpo.sh', 'publish.sh', 'README.md', 'base-model/config.json', 'reward-model/config.json']) {
      expect([f, existsSync(path.join(handoff, f))]).toEqual([f, true]);
    }
    const storeWhileWaiting = await openStore({ url: database.url });
    try {
      expect(await findTrainingRun(storeWhileWaiting.db, `${runId}-external`)).toMatchObject({ kind: 'external', status: 'running', parentRunId: runId });
    } finally {
      await storeWhileWaiting.close();
    }

    // ---- the cluster: our own trainer in a separate process, on the hand-off's files, then the publish back
    const out = path.join(work, 'cluster-out');
    await cli(['train', 'sft', '--model', path.join(handoff, 'base-model'), '--data', path.join(handoff, 'sft.jsonl'), '--out', out, '--steps', '4', '--batch-size', '4', '--heldout', '0', '--threads', '1'], {});
    const published = JSON.parse((await cli(['models', 'publish', '--run', runId, out, '--nats', natsUrl], {})).trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
    expect(published).toMatchObject({ version: `${runId}-external`, role: 'policy', runId });

    // ---- the loop takes it, evaluates it on the held-out prompts and promotes it
    const done = await waitFor(async () => {
      const s = await status();
      return s.running === null && s.lastRun?.runId === runId ? s : undefined;
    }, 120_000, `the loop run to finish: ${logs()}`);
    expect(done.lastRun?.status).toBe('succeeded');
    const loopQueue = new Queue(QUEUES.loop, { connection: redis, prefix });
    try {
      const job = await loopQueue.getJob(/^loop-(\d+)-/.exec(runId)?.[1] ?? '');
      const result = loopJobResultSchema.parse(job?.returnvalue);
      expect(result).toMatchObject({ loopRunId: runId, candidateVersion: `${runId}-external`, baseVersion: 'base', promoted: true, stoppedBecause: null });
      expect(result.eval).toMatchObject({ candidateVersion: `${runId}-external`, activeVersion: 'base', pass: true, promoted: true });
      expect(result.eval?.report.prompts).toBe(manifest.heldout_prompts);
    } finally {
      await loopQueue.close();
    }
    expect((await readActive(nc, 'policy'))?.version).toBe(`${runId}-external`);

    const store = await openStore({ url: database.url });
    try {
      expect(await findTrainingRun(store.db, runId)).toMatchObject({ kind: 'loop', status: 'succeeded', stage: 'done' });
      const ext = await findTrainingRun(store.db, `${runId}-external`);
      expect(ext).toMatchObject({ kind: 'external', status: 'succeeded', parentRunId: runId });
      expect(ext?.metrics).toMatchObject({ candidate_version: `${runId}-external`, handoff_dir: handoff, sft_rows: 12 });
      const row = await findModelVersion(store.db, `${runId}-external`);
      expect(row).toMatchObject({ role: 'policy', training_run_id: runId });
      expect(row?.metrics).toMatchObject({ eval: { pass: true, active: 'base' }, lineage: { runId } });
    } finally {
      await store.close();
    }
    process.stderr.write(`loop-external: ${runId} handed off, trained by the CLI, published, evaluated and promoted in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  });
});
