/**
 * The eval gate end to end inside the trainer: the `eval` processor driven with plain job objects (no Redis), its
 * versions in a private nats-server's `checkpoints` object store and `models` KV, its store a throwaway Postgres
 * database, and the reward and moderation handlers (real models, real Nest NATS transport) in this process.
 * A candidate published as a training job publishes it (registerAndPublish) is evaluated against the active policy
 * with bounds it fails one at a time: the job answers not promoted with one reason naming that bound, the candidate's
 * version row becomes `rejected` with those reasons, the eval run records the verdict, and the active version stays.
 * The same candidate inside every bound is promoted (so a refusal is the gate's doing); a passing candidate without
 * `promote` stays a candidate; a passing candidate's first samples go beside the active version's into the blind A/B
 * queue, and with abWait its promotion waits there; a missing version fails the job for good and marks its run failed. The flag-rate
 * bound's refusal is libs/rl/src/policy.eval.gate.spec.ts (no real candidate here makes outputs flagged on purpose).
 * With independentRewardVersion (a reward version in the checkpoint store, here the training reward model turned
 * around: the same trunk with its head negated) the trainer scores the same samples with it in-process: its gain is in
 * the report, the run and the lineage, and minIndependentGainStd above that gain refuses the candidate; a version that
 * is the served reward model, a policy, or unpublished fails the job.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Logger, Module, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { UnrecoverableError } from 'bullmq';
import type { NatsConnection } from 'nats';
import { evalJobResultSchema, FLYWHEEL_VERSION, type ActiveModelEntry, type EvalJobDataInput, type EvalJobResult } from '@flywheel/contracts';
import { loadModerationConfig, loadRewardConfig, loadTrainerConfig } from '@flywheel/config';
import { kernelsReference } from '@flywheel/kernels';
import { connectMesh, createServiceMetrics, drainQuietly, findPublished, MeshConnection, natsTransportOptions, promoteVersion, readActive, Readiness, type ActiveModelSourceLike } from '@flywheel/mesh';
import { loadCheckpoint, writeHfCheckpoint } from '@flywheel/model';
import { moderatorFromConfig } from '@flywheel/moderation';
import { findModelVersion, findTrainingRun } from '@flywheel/store';
import { createThrowawayDatabase, type ThrowawayDatabase } from '@flywheel/store/testing';
import { ModerationController } from '../apps/moderation/src/moderation.controller';
import { ModerationMetrics } from '../apps/moderation/src/moderation.metrics';
import { ModerationService } from '../apps/moderation/src/moderation.service';
import { RewardController } from '../apps/reward/src/reward.controller';
import { RewardFunctionsService } from '../apps/reward/src/reward-functions.service';
import { RewardModelService } from '../apps/reward/src/reward-model.service';
import { publishedVersionOf, publishVersion, registerAndPublish } from '../apps/trainer/src/checkpoint.publisher';
import { EvalProcessor } from '../apps/trainer/src/eval.processor';
import { candidateOf } from '../apps/trainer/src/queue.processor';
import { TrainerMetrics } from '../apps/trainer/src/trainer.metrics';
import { TrainerStore } from '../apps/trainer/src/trainer.store';
import { freePort, repoRoot, waitFor } from './support/processes';

jest.setTimeout(60_000);

const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const MODEL = path.join(repoRoot, 'models', 'stories260K');
const ACTIVE = 'gate-base';
const REWARD_VERSION = 'rm-gate';
const INDEPENDENT_VERSION = 'rm-gate-independent';
const PROMPTS = ['dog', 'cat', 'duck'].map((a) => [{ role: 'user' as const, content: `Tell me a story about a ${a}.` }]);

/** No `models` KV entry for the in-process reward service: it serves its configured model. */
const noKv: ActiveModelSourceLike = {
  current: async () => null,
  watch: async function* (signal: AbortSignal): AsyncIterable<ActiveModelEntry> {
    await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
  },
  fetch: async () => {
    throw new Error('no KV for the reward handlers here');
  },
};

describe('eval gate in the trainer (private NATS, real Postgres, reward and moderation handlers)', () => {
  const stateDir = mkdtempSync(path.join(os.tmpdir(), 'flywheel-eval-gate-'));
  const candidateDir = path.join(stateDir, 'candidate');
  let nats: ChildProcess;
  let nc: NatsConnection;
  let mesh: MeshConnection;
  let handlers: INestMicroservice;
  let reward: RewardModelService;
  let database: ThrowawayDatabase;
  let store: TrainerStore;
  let processor: EvalProcessor;
  let jobs = 0;

  beforeAll(async () => {
    Logger.overrideLogger(false);
    // The candidate: the active policy at a lower temperature (model.norm.weight × 2 doubles every logit), so its
    // samples and its KL to the active policy differ from the active's for sure. The reward model: the same trunk
    // with a seeded scalar head.
    const base = await loadCheckpoint(MODEL);
    const baseConfig = JSON.parse(readFileSync(path.join(MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;
    const sharp = new Map(base.weights);
    sharp.set('model.norm.weight', base.weights.get('model.norm.weight')!.map((x) => 2 * x));
    await writeHfCheckpoint(candidateDir, { spec: base.spec, weights: sharp, baseConfig, tokenizerDir: MODEL });
    const rmDir = path.join(stateDir, 'rm');
    const rm = new Map(base.weights);
    const head = kernelsReference.randomF32(base.spec.hiddenSize, kernelsReference.makeRng(9), 0.5);
    rm.set('score.weight', head);
    await writeHfCheckpoint(rmDir, { spec: base.spec, weights: rm, scoreLabels: 1, baseConfig, tokenizerDir: MODEL });
    // The independent reward model: the training one turned around (every score negated), so its numbers are known.
    const independentDir = path.join(stateDir, 'rm-independent');
    const turned = new Map(base.weights);
    turned.set('score.weight', head.map((x) => -x));
    await writeHfCheckpoint(independentDir, { spec: base.spec, weights: turned, scoreLabels: 1, baseConfig, tokenizerDir: MODEL });

    const natsPort = await freePort();
    nats = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(natsPort), '-sd', path.join(stateDir, 'nats')], { stdio: 'ignore' });
    const natsUrl = `nats://127.0.0.1:${natsPort}`;
    nc = await waitFor(() => connectMesh({ servers: [natsUrl], name: 'eval-gate-test' }), 10_000, 'private nats-server');
    const serviceMetrics = createServiceMetrics('trainer', 'eval-gate-trainer', FLYWHEEL_VERSION);
    mesh = new MeshConnection([natsUrl], 'eval-gate-trainer', new Readiness(), serviceMetrics);
    await publishVersion(mesh, { version: ACTIVE, role: 'policy', dir: MODEL, parent: null, runId: null, exports: [] });
    await promoteVersion(nc, 'policy', ACTIVE, 'test', 'the policy before the eval');
    // Published as the loop publishes its independent reward model: a `reward` version, never made active.
    await publishVersion(mesh, { version: INDEPENDENT_VERSION, role: 'reward', dir: independentDir, parent: null, runId: null, exports: [] });

    // reward.score / reward.info and moderation.check as their services answer them, on the private NATS.
    const readiness = new Readiness();
    reward = new RewardModelService(
      loadRewardConfig({ FLYWHEEL_REWARD_MODEL: rmDir, FLYWHEEL_REWARD_VERSION: REWARD_VERSION, FLYWHEEL_REWARD_THREADS: '1' }),
      createServiceMetrics('reward', 'eval-gate-reward', FLYWHEEL_VERSION),
      readiness,
      noKv,
    );
    reward.onModuleInit();
    const moderationMetrics = new ModerationMetrics(createServiceMetrics('moderation', 'eval-gate-moderation', FLYWHEEL_VERSION).registry);
    @Module({
      controllers: [RewardController, ModerationController],
      providers: [
        { provide: RewardModelService, useValue: reward },
        { provide: RewardFunctionsService, useValue: new RewardFunctionsService(loadRewardConfig({})) },
        { provide: ModerationService, useValue: new ModerationService({ current: moderatorFromConfig(loadModerationConfig({})) }, moderationMetrics) },
      ],
    })
    class HandlersModule {}
    handlers = await NestFactory.createMicroservice(HandlersModule, { ...natsTransportOptions('reward', [natsUrl], 'eval-gate-handlers'), logger: false });
    await handlers.listen();

    database = await createThrowawayDatabase(ADMIN_URL);
    // The active version is the original base here: KL to the base is KL to the active.
    const config = loadTrainerConfig({ NATS_URL: natsUrl, DATABASE_URL: database.url, FLYWHEEL_STATE_DIR: stateDir, FLYWHEEL_TRAINER_THREADS: '1', FLYWHEEL_POLICY_VERSION: ACTIVE });
    store = new TrainerStore(config);
    processor = new EvalProcessor(config, store, mesh, new TrainerMetrics(serviceMetrics));
  });

  afterAll(async () => {
    await handlers?.close();
    await reward?.onApplicationShutdown();
    await store?.onApplicationShutdown();
    await mesh?.close();
    await drainQuietly(nc);
    nats?.kill('SIGTERM');
    await database?.drop();
    rmSync(stateDir, { recursive: true, force: true });
  });

  /** The candidate's files as a training job registers and publishes them, as `version`. */
  const publishCandidate = (version: string) =>
    registerAndPublish(
      store,
      mesh,
      candidateOf({ id: version, role: 'policy', kind: 'ppo', source: { kind: 'jsonl', path: '/prompts.jsonl' }, config: {}, startedAt: new Date(), checkpoint: candidateDir, metrics: { steps: 1 }, baseVersion: ACTIVE }),
      { parent: ACTIVE, exports: [] },
    );

  const runEval = async (data: EvalJobDataInput): Promise<{ result: EvalJobResult; runId: string; stages: unknown[] }> => {
    const id = `gate-${++jobs}`;
    const stages: unknown[] = [];
    const result = evalJobResultSchema.parse(await processor.process({ id, timestamp: Date.now(), data, updateProgress: async (p) => void stages.push(p) }));
    return { result, runId: `eval-${id}`, stages };
  };

  const evalData = (candidateVersion: string, gate: EvalJobDataInput['gate'], promote = true): EvalJobDataInput => ({
    candidateVersion,
    rewardVersion: REWARD_VERSION,
    prompts: PROMPTS,
    samples: 3,
    maxNewTokens: 16,
    seed: 4,
    gate,
    promote,
  });

  /** Bounds the candidate meets for sure; each case tightens exactly one. */
  const open = { minRewardGainStd: -1e9, maxKl: 1e9, maxFlagRateIncrease: 1 };

  it.each([
    ['the reward gain below minRewardGainStd', 'cand-gain', { ...open, minRewardGainStd: 1e9 }, /^reward gain -?\d+\.\d{3} std < 1000000000$/],
    ['the KL above maxKl', 'cand-kl', { ...open, maxKl: 1e-6 }, /^KL \d+\.\d{3} nats > 0\.000001$/],
    ['the KL to the original base above maxKlBase', 'cand-drift', { ...open, maxKlBase: 1e-6 }, /^KL to the base \d+\.\d{3} nats > 0\.000001$/],
  ])('refuses a candidate with %s: one reason naming it, its version row rejected, the active version unchanged', async (_, version, gate, reason) => {
    await publishCandidate(version);
    const activeBefore = await readActive(nc, 'policy');
    const { result, runId, stages } = await runEval(evalData(version, gate));

    expect(result).toMatchObject({ candidateVersion: version, activeVersion: ACTIVE, pass: false, promoted: false, trainingRunId: runId });
    expect(result.reasons).toHaveLength(1);
    expect(result.reasons[0]).toMatch(reason);
    // The report behind the verdict: real samples on both sides, and a candidate that moved away from the active.
    expect(result.report).toMatchObject({ prompts: PROMPTS.length, samples: 3 });
    expect(result.report.kl).toBeGreaterThan(1e-6);
    expect(Number.isFinite(result.report.reward_gain_std)).toBe(true);
    expect(result.report.flag_rate_before).not.toBeNull();
    expect(stages).toContainEqual({ stage: 'sampling' });

    const row = await store.use((db) => findModelVersion(db, version));
    expect(row).toMatchObject({ id: version, role: 'policy', status: 'rejected' });
    expect(row?.metrics).toMatchObject({ steps: 1, rejected: result.reasons });
    // Both KLs in the candidate's lineage.
    expect(result.report.kl_base).toBe(result.report.kl);
    expect(row?.metrics).toMatchObject({ eval: { run: runId, active: ACTIVE, base: ACTIVE, kl: result.report.kl, kl_base: result.report.kl_base, pass: false, reasons: result.reasons } });
    // The yardsticks beside them: best-of-3 of the active's own samples, and the gain at equal length.
    expect(result.report.best_of_n).toMatchObject({ n: 3, kl_bound: expect.closeTo(Math.log(3) - 2 / 3, 12) });
    expect(row?.metrics).toMatchObject({ eval: { best_of_n: result.report.best_of_n, reward_gain_std_length_controlled: result.report.reward_gain_std_length_controlled } });
    const run = await store.use((db) => findTrainingRun(db, runId));
    expect(run).toMatchObject({ kind: 'eval', status: 'succeeded', baseVersion: ACTIVE, error: null });
    expect(run?.metrics).toMatchObject({ pass: false, promoted: false, reasons: result.reasons, candidate: version, active: ACTIVE, reward_version: REWARD_VERSION, kl: result.report.kl });
    expect(await readActive(nc, 'policy')).toEqual(activeBefore);
    expect(activeBefore?.version).toBe(ACTIVE);
  });

  it('lists every bound a candidate fails', async () => {
    await publishCandidate('cand-both');
    const { result } = await runEval(evalData('cand-both', { ...open, minRewardGainStd: 1e9, maxKl: 1e-6 }));
    expect(result).toMatchObject({ pass: false, promoted: false });
    expect(result.reasons.map((r) => r.split(' ')[0])).toEqual(['reward', 'KL']);
    expect(await store.use((db) => findModelVersion(db, 'cand-both'))).toMatchObject({ status: 'rejected', metrics: { rejected: result.reasons } });
    expect((await readActive(nc, 'policy'))?.version).toBe(ACTIVE);
  });

  it('queues a passing candidate’s outputs beside the active version’s for blind A/B review, and with abWait holds its promotion', async () => {
    await publishCandidate('cand-ab');
    const { result, runId } = await runEval({ ...evalData('cand-ab', open, true), abSamples: 2, abWait: { minVerdicts: 2 } });
    expect(result).toMatchObject({ pass: true, promoted: false, abPairs: 2, awaitingAb: true });
    expect((await readActive(nc, 'policy'))?.version).toBe(ACTIVE);
    const rows = await store.use((db) => db.selectFrom('ab_reviews').selectAll().where('eval_run_id', '=', runId).orderBy('pair_index').execute());
    expect(rows).toHaveLength(2);
    for (const [i, row] of rows.entries()) {
      // The first sample of each prompt from both versions, same seed; which side is the candidate is only in the row.
      const example = result.report.examples[i]!;
      const [candidate, active] = row.candidate_side === 'a' ? [row.output_a, row.output_b] : [row.output_b, row.output_a];
      expect([candidate, active]).toEqual([example.response, example.active_response]);
      expect(row).toMatchObject({ candidate_version: 'cand-ab', active_version: ACTIVE, prompt: PROMPTS[i], min_verdicts: 2, verdict: null });
    }
    expect(await store.use((db) => findModelVersion(db, 'cand-ab'))).toMatchObject({ status: 'candidate', metrics: { eval: { pass: true, ab: { pairs: 2, wait: true, min_verdicts: 2 } } } });
    expect(await store.use((db) => findTrainingRun(db, runId))).toMatchObject({ metrics: { pass: true, promoted: false, ab_pairs: 2, awaiting_ab: true } });
    // Refused candidates meet no reviewers.
    const refused = await store.use((db) => db.selectFrom('ab_reviews').select('id').where('candidate_version', 'in', ['cand-gain', 'cand-kl', 'cand-drift', 'cand-both']).execute());
    expect(refused).toEqual([]);
  });

  it('scores the candidate with an independent reward model (report, run, lineage) and refuses it when minIndependentGainStd is above that gain', async () => {
    await publishCandidate('cand-indep');
    // Without an independent reward model the bound has nothing to read: measured as null, not applied.
    const without = await runEval(evalData('cand-indep', { ...open, minIndependentGainStd: 1e9 }, false));
    expect(without.result).toMatchObject({ pass: true, promoted: false, reasons: [], report: { independent: null } });
    expect(await store.use((db) => findModelVersion(db, 'cand-indep'))).toMatchObject({ status: 'candidate', metrics: { eval: { run: without.runId, independent: null } } });

    // Measured and shown, not applied (null): the turned-around model's view is the training model's, negated.
    const shown = await runEval({ ...evalData('cand-indep', { ...open, minIndependentGainStd: null }, false), independentRewardVersion: INDEPENDENT_VERSION });
    const { report } = shown.result;
    const independent = report.independent!;
    expect(shown.result).toMatchObject({ pass: true, promoted: false, reasons: [] });
    expect(independent.reward_before).toBeCloseTo(-report.reward_before, 9);
    expect(independent.reward_after).toBeCloseTo(-report.reward_after, 9);
    expect(independent.reward_std_before).toBeCloseTo(report.reward_std_before, 9);
    expect(independent.gain_std).toBeCloseTo(-report.reward_gain_std, 9);
    expect(independent.gain_std_length_controlled).toBeCloseTo(-report.reward_gain_std_length_controlled, 9);
    expect(Math.abs(independent.gain_std)).toBeGreaterThan(1e-3);
    // The same samples as the eval without it (same seeds): only the independent evidence is new.
    expect({ ...report, independent: null }).toEqual(without.result.report);
    const lineage = { version: INDEPENDENT_VERSION, gain_std: independent.gain_std, gain_std_length_controlled: independent.gain_std_length_controlled };
    expect(await store.use((db) => findModelVersion(db, 'cand-indep'))).toMatchObject({ status: 'candidate', metrics: { eval: { run: shown.runId, pass: true, independent: lineage } } });
    expect(await store.use((db) => findTrainingRun(db, shown.runId))).toMatchObject({
      status: 'succeeded',
      metrics: { independent_reward_version: INDEPENDENT_VERSION, reward_version: REWARD_VERSION, independent, pass: true },
    });

    // The bound above the measured gain: refused on that evidence alone, the version rejected, the active one kept.
    const bound = Number((independent.gain_std + 0.5).toFixed(3));
    const refused = await runEval({ ...evalData('cand-indep', { ...open, minIndependentGainStd: bound }, true), independentRewardVersion: INDEPENDENT_VERSION });
    expect(refused.result).toMatchObject({ pass: false, promoted: false, reasons: [`independent reward gain ${independent.gain_std.toFixed(3)} std < ${bound}`] });
    expect(refused.result.report).toEqual(report);
    expect(await store.use((db) => findModelVersion(db, 'cand-indep'))).toMatchObject({
      status: 'rejected',
      metrics: { rejected: refused.result.reasons, eval: { run: refused.runId, pass: false, reasons: refused.result.reasons, independent: lineage } },
    });
    expect(await store.use((db) => findTrainingRun(db, refused.runId))).toMatchObject({ metrics: { pass: false, promoted: false, independent_reward_version: INDEPENDENT_VERSION } });
    expect((await readActive(nc, 'policy'))?.version).toBe(ACTIVE);
  });

  it('fails for good when the independent reward model is the served one, a policy, or not published', async () => {
    await publishCandidate('cand-indep-bad');
    const cases: [string, RegExp][] = [
      [REWARD_VERSION, /the independent reward model rm-gate is the one the reward service serves: it is not independent/],
      [ACTIVE, /version gate-base is a policy model, not a reward model/],
      ['rm-never-published', /reward version rm-never-published is not published/],
    ];
    for (const [version, message] of cases) {
      const err: unknown = await runEval({ ...evalData('cand-indep-bad', open, true), independentRewardVersion: version }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnrecoverableError);
      expect((err as Error).message).toMatch(message);
      expect(await store.use((db) => findTrainingRun(db, `eval-gate-${jobs}`))).toMatchObject({ status: 'failed', error: expect.stringMatching(message) });
    }
    expect(await store.use((db) => findModelVersion(db, 'cand-indep-bad'))).toMatchObject({ status: 'candidate' });
    expect((await readActive(nc, 'policy'))?.version).toBe(ACTIVE);
  });

  it('leaves a passing candidate a candidate without promote; with promote makes it the active policy', async () => {
    await publishCandidate('cand-pass');
    const quiet = await runEval(evalData('cand-pass', open, false));
    expect(quiet.result).toMatchObject({ pass: true, promoted: false, reasons: [] });
    expect(await store.use((db) => findModelVersion(db, 'cand-pass'))).toMatchObject({ status: 'candidate' });
    expect((await readActive(nc, 'policy'))?.version).toBe(ACTIVE);

    const loud = await runEval(evalData('cand-pass', open, true));
    expect(loud.result).toMatchObject({ pass: true, promoted: true, reasons: [], activeVersion: ACTIVE });
    // Same seeds, same policies: the same report as the run without promotion.
    expect(loud.result.report).toEqual(quiet.result.report);
    expect(await readActive(nc, 'policy')).toMatchObject({ version: 'cand-pass', promotedBy: 'trainer-eval' });
    expect(await store.use((db) => findTrainingRun(db, loud.runId))).toMatchObject({ status: 'succeeded', metrics: { pass: true, promoted: true } });
    // Published content is immutable: the same files again are a no-op, other files under the name are refused;
    // and the published version of the candidate's files is found, the active one first.
    const published = await findPublished(nc, 'cand-pass');
    await publishVersion(mesh, { version: 'cand-pass', role: 'policy', dir: candidateDir, parent: ACTIVE, runId: 'cand-pass', exports: [] });
    expect(await findPublished(nc, 'cand-pass')).toEqual(published);
    await expect(publishVersion(mesh, { version: 'cand-pass', role: 'policy', dir: MODEL, parent: null, runId: null, exports: [] })).rejects.toThrow(/already published with other content/);
    expect(await publishedVersionOf(mesh, 'policy', candidateDir)).toBe('cand-pass');
    expect(await publishedVersionOf(mesh, 'policy', MODEL)).toBe(ACTIVE);
    expect(await publishedVersionOf(mesh, 'reward', candidateDir)).toBeNull();
  });

  it('fails for good, with its run marked failed, on an unpublished candidate, and refuses the active policy as candidate and bad bounds', async () => {
    const err: unknown = await runEval(evalData('never-published', open, true)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect((err as Error).message).toMatch(/policy version never-published is not published/);
    expect(await store.use((db) => findTrainingRun(db, `eval-gate-${jobs}`))).toMatchObject({ status: 'failed', error: expect.stringMatching(/never-published is not published/) });

    const active = (await readActive(nc, 'policy'))!.version;
    await expect(runEval(evalData(active, open))).rejects.toThrow(new RegExp(`the candidate ${active} is already the active policy`));
    await expect(runEval(evalData('cand-kl', { ...open, maxKl: 0 }))).rejects.toThrow(/invalid eval job data: gate\.maxKl/);
  });
});
