/**
 * `node dist/scripts/demo/loop-default.bench.js [--pairs 60] [--json] [--keep] [--overrides JSON]`: the RL loop's wall
 * time per stage with its DEFAULT settings as `npm start` meets them (models/stories260K, the whole mesh of
 * demo-mesh.ts with nothing changed but where services listen), on `--pairs` approved preference pairs seeded in the
 * store, started as the admin UI's "Start run now" does; plus the load and the numbers that say whether it learned.
 * `--overrides` tries other loop settings on the same pairs. A measurement, not a test: it asserts nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loopStartRequestSchema, loopStatusSchema, SUBJECTS, type LoopStartRequest, type LoopStatus } from '@flywheel/contracts';
import { connectMesh, drainQuietly, MeshClient } from '@flywheel/mesh';
import { applyReview, createExport, findTrainingRun, openStore, writeCompletion, type Store } from '@flywheel/store';
import { completionRecord } from '@flywheel/store/testing';
import { followLoopRun, startDemoMesh, type DemoMesh } from './demo-mesh';
import { happyEndingPreferences, PREFERENCE_RULE } from './happy-endings';

const args = parseArgs({
  options: { pairs: { type: 'string', default: '60' }, json: { type: 'boolean', default: false }, keep: { type: 'boolean', default: false }, overrides: { type: 'string' } },
}).values;
const pairs = Number(args.pairs);
const started = Date.now();
const log = (msg: string) => process.stderr.write(`[bench ${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s] ${msg}\n`);
const load = () => os.loadavg().map((x) => Number(x.toFixed(2)));
const round = (x: number | null | undefined, d = 3): number | null => (typeof x === 'number' && Number.isFinite(x) ? Number(x.toFixed(d)) : null);

/**
 * n approved preference pairs as the review UI leaves them: a chat completion with two choices (the chosen one
 * first on even pairs, second on odd ones, so position says nothing) and a reviewer's `choose`.
 */
async function seedApprovedPairs(store: Store, n: number): Promise<void> {
  for (const [i, p] of happyEndingPreferences(n).entries()) {
    const id = `cmpl-bench-${i}`;
    const texts = i % 2 === 0 ? [p.chosen[0].content, p.rejected[0].content] : [p.rejected[0].content, p.chosen[0].content];
    await writeCompletion(
      store.db,
      completionRecord(id, {
        request: { model: 'stories260K', messages: p.prompt, n: 2 },
        messages: p.prompt,
        choices: texts.map((text, index) => ({ index, promptIndex: 0, text, finishReason: 'stop', tokenIds: [], logprobs: null })),
      }),
    );
    const r = await applyReview(store.db, 'bench-reviewer', { action: 'choose', completion_id: id, chosen: i % 2 === 0 ? 0 : 1, rejected: i % 2 === 0 ? 1 : 0 });
    if (!r.ok) throw new Error(`could not approve pair ${i}: ${JSON.stringify(r)}`);
  }
}

async function main(): Promise<number> {
  if (!Number.isInteger(pairs) || pairs < 2) throw new Error('--pairs must be an integer ≥ 2');
  const work = mkdtempSync(path.join(os.tmpdir(), 'flywheel-bench-'));
  const queuePrefix = 'bench';
  let demo: DemoMesh | null = null;
  let store: Store | null = null;
  let nc: Awaited<ReturnType<typeof connectMesh>> | null = null;
  try {
    const loadAtStart = load();
    // Nothing but where the services listen and keep their state: model, loop and training settings are the defaults.
    demo = await startDemoMesh({ work, queuePrefix, env: {}, log });
    log(`five services ready (NATS ${demo.natsUrl}, Redis ${demo.redisUrl}, ${demo.store}); logs in ${demo.logsDir}`);
    store = await openStore({ url: demo.databaseUrl });
    await seedApprovedPairs(store, pairs);
    log(`${pairs} approved preference pairs in the store (${PREFERENCE_RULE})`);

    nc = await connectMesh({ servers: [demo.natsUrl], name: 'loop-bench' });
    const mesh = new MeshClient(nc);
    let request: LoopStartRequest | { action: 'start' } = { action: 'start' };
    if (args.overrides) {
      // A start with overrides needs its data named: the same export the plain start would have made.
      const exp = await createExport(store.db, { format: 'preference', filters: {}, filtersRecord: { by: 'loop-bench' }, createdBy: 'loop-bench' });
      request = loopStartRequestSchema.parse({ action: 'start', data: { kind: 'export', exportId: exp.id }, overrides: JSON.parse(args.overrides) as unknown });
    }
    const loadAtRun = load();
    const t0 = Date.now();
    const first: LoopStatus = await mesh.request(SUBJECTS.trainer.loop, request, loopStatusSchema, { timeoutMs: 30_000, retryUndeliveredMs: 10_000 });
    const runId = first.running?.runId;
    if (!runId) throw new Error(`the trainer did not start a loop run: ${first.message ?? 'no reason given'}`);
    log(`${runId} started${args.overrides ? ` with overrides ${args.overrides}` : ' with the default settings'}`);

    const { result, stages, ppoSteps } = await followLoopRun({ mesh, redisUrl: demo.redisUrl, queuePrefix, runId, timeoutMs: 30 * 60_000, log, logsDir: demo.logsDir });
    const totalS = (stages[stages.length - 1].at - t0) / 1000;
    const loadAtEnd = load();
    // Wall time of each stage: from when it was first seen running to when the next one was (0.5 s resolution).
    const stageS: Record<string, number> = {};
    let prev = { stage: 'start', at: t0 };
    for (const s of stages) {
      if (prev.stage !== 'start') stageS[prev.stage] = round((s.at - prev.at) / 1000, 1)!;
      else if (s.at > t0) stageS['until-first-stage'] = round((s.at - t0) / 1000, 1)!;
      prev = s;
    }
    const loopRun = await findTrainingRun(store.db, runId);
    const rmRun = await findTrainingRun(store.db, result.rewardVersion);
    const rm = (rmRun?.metrics ?? {}) as Record<string, unknown>;
    const sum = (k: 'time_rollout_s' | 'time_score_s' | 'time_update_s' | 'time_sync_s') => round(ppoSteps.reduce((a, m) => a + m[k], 0), 1);
    const lastStep = ppoSteps[ppoSteps.length - 1];
    const { data: _data, jobId: _jobId, ...settings } = (loopRun?.config ?? {}) as Record<string, unknown>;
    const report = result.eval?.report;
    const out = {
      pairs,
      store: demo.store,
      cpus: os.cpus().length,
      load: { at_start: loadAtStart, at_run: loadAtRun, at_end: loadAtEnd },
      loop_run: runId,
      minutes: round(totalS / 60, 2),
      within_10_minutes: totalS < 600,
      stage_s: stageS,
      reward_model: {
        heldout_accuracy: rm.heldout_accuracy ?? null,
        heldout_accuracy_before: rm.heldout_accuracy_before ?? null,
        loss_first: round(rm.loss_first as number),
        loss_last: round(rm.loss_last as number),
        pairs: rm.pairs ?? null,
        heldout_pairs: rm.heldout_pairs ?? null,
      },
      ppo: lastStep
        ? {
            steps: ppoSteps.length,
            reward_first: round(ppoSteps[0].reward_mean),
            reward_last: round(lastStep.reward_mean),
            kl_last: round(lastStep.kl),
            kl_coef_last: round(lastStep.kl_coef, 4),
            response_length_last: round(lastStep.response_length, 1),
            stop_fraction_last: round(lastStep.stop_fraction),
            time_s: { rollout: sum('time_rollout_s'), score: sum('time_score_s'), update: sum('time_update_s'), sync: sum('time_sync_s') },
          }
        : null,
      eval: report
        ? {
            prompts: report.prompts,
            samples: report.samples,
            reward_before: round(report.reward_before),
            reward_std_before: round(report.reward_std_before),
            reward_after: round(report.reward_after),
            reward_gain_std: round(report.reward_gain_std),
            kl: round(report.kl),
            flag_rate_before: report.flag_rate_before,
            flag_rate_after: report.flag_rate_after,
            pass: result.eval?.pass,
            reasons: result.eval?.reasons,
          }
        : null,
      promoted: result.promoted,
      stopped_because: result.stoppedBecause,
      settings,
    };
    log(`${runId}: ${out.minutes} min; stages ${JSON.stringify(stageS)}; ${result.promoted ? 'promoted' : `not promoted (${result.stoppedBecause ?? result.eval?.reasons.join('; ')})`}`);
    process.stdout.write(args.json ? JSON.stringify(out) + '\n' : JSON.stringify(out, null, 2) + '\n');
    return 0;
  } finally {
    await drainQuietly(nc);
    await store?.close();
    await demo?.stop();
    if (args.keep) log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`loop-default.bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
