/**
 * `npm run demo:rlhf [-- --json] [--seed N] [--keep]`: the whole RL loop on stories260K through the real services.
 * It starts a private NATS (JetStream) and Redis, a throwaway Postgres database when one is reachable (else the
 * embedded store), and all five compiled services; writes the synthetic preference set (happy-endings.ts: a story
 * that ends happily beats the same story ending sadly); asks the trainer over `trainer.loop` for one loop run on
 * it (reward-train → publish + activate the reward model → PPO scored by the reward service → eval against the
 * active policy → promotion through the `models` KV); waits for the policy replica to hot-swap; and serves a chat
 * completion from the new version through the gateway. Prints progress on stderr and, with --json, one JSON object
 * on stdout. Exit 0 when the loop ran and the new version served the request; `targets_met` says whether the
 * demo's targets (reward gain ≥ 1 std, KL ≤ 5 nats, < 10 minutes) were met.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loopStatusSchema, SUBJECTS, type LoopStartRequest } from '@flywheel/contracts';
import { connectMesh, drainQuietly, MeshClient } from '@flywheel/mesh';
import { followLoopRun, repoRoot, startDemoMesh, waitFor, type DemoMesh } from './demo-mesh';
import { happyEndingPreferences, PREFERENCE_RULE } from './happy-endings';

const args = parseArgs({ options: { json: { type: 'boolean', default: false }, seed: { type: 'string', default: '1' }, keep: { type: 'boolean', default: false } } }).values;
const seed = Number(args.seed);
const started = Date.now();
const log = (msg: string) => process.stderr.write(`[demo ${((Date.now() - started) / 1000).toFixed(0).padStart(4)}s] ${msg}\n`);

async function main(): Promise<number> {
  const shared = path.resolve(repoRoot, '..', 'shared', 'models', 'stories260K-hf');
  const baseModel = existsSync(path.join(shared, 'config.json')) ? shared : path.join(repoRoot, 'models', 'stories260K');
  const work = mkdtempSync(path.join(os.tmpdir(), 'flywheel-demo-'));
  let demo: DemoMesh | null = null;
  let nc: Awaited<ReturnType<typeof connectMesh>> | null = null;
  try {
    // ---- private NATS and Redis, a throwaway database when Postgres is here, the five services
    demo = await startDemoMesh({
      work,
      queuePrefix: 'demo',
      env: { FLYWHEEL_MODEL: baseModel, FLYWHEEL_POLICY_VERSION: 'base', FLYWHEEL_LOOP_MIN_NEW_APPROVED: '0' },
      log,
    });
    const { ports, apiKey } = demo;
    log(`NATS ${demo.natsUrl}, Redis ${demo.redisUrl}, store ${demo.store}; base policy ${baseModel}`);
    log('all five services are ready');

    // ---- the preference set and one loop run on it
    const prefs = happyEndingPreferences(160);
    const prefsFile = path.join(work, 'preferences.jsonl');
    writeFileSync(prefsFile, prefs.map((p) => JSON.stringify(p)).join('\n') + '\n');
    log(`${prefs.length} synthetic preference pairs (${PREFERENCE_RULE}) → ${prefsFile}`);
    nc = await connectMesh({ servers: [demo.natsUrl], name: 'rlhf-demo' });
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
    const { result } = await followLoopRun({ mesh, redisUrl: demo.redisUrl, queuePrefix: 'demo', runId, timeoutMs: 15 * 60_000, log, logsDir: demo.logsDir });
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
    await demo?.stop();
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
