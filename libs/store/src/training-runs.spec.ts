/**
 * Training runs on both backends (this machine's Postgres, the embedded Postgres): migration 0003 widens the
 * kinds and adds loop children; creating a run twice keeps the first; patches set times by status and
 * merge summary metrics; a resumed job re-logging steps leaves one point per step; lists page newest
 * first; a detail carries series, children and the versions registered through registerCandidateVersion.
 */
import { newTimeOrderedId, trainingRunDetailSchema, trainingRunSchema } from '@flywheel/contracts';
import { onTestStore } from './store.testing';
import type { Store } from './store.open';
import { registerCandidateVersion } from './model-versions.writes';
import { appendTrainingMetrics, createTrainingRun, updateTrainingRun } from './training-runs.writes';
import { getTrainingRunDetail, listTrainingRuns } from './training-runs.queries';

jest.setTimeout(60_000);

const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const runId = (kind: string) => `${kind}-${newTimeOrderedId()}`;

describe.each([['postgres'], ['embedded Postgres']] as const)('training runs on %s', (kind) => {
  let store: Store;
  onTestStore(kind, ADMIN_URL, 'flywheel-runs-store-', (s) => (store = s));

  it('accepts every run kind and refuses any other', async () => {
    for (const k of ['sft', 'reward-train', 'ppo', 'dpo', 'eval', 'loop'] as const) {
      expect((await createTrainingRun(store.db, { id: runId(k), kind: k })).kind).toBe(k);
    }
    await expect(
      store.db.insertInto('training_runs').values({ id: runId('x'), kind: 'magic' as never, status: 'queued', base_version: null, export_id: null, config: '{}', metrics: '{}' }).execute(),
    ).rejects.toThrow(/training_runs_kind_check/);
  });

  it('creates a run once per id and keeps what the first create wrote', async () => {
    const id = runId('ppo');
    const first = await createTrainingRun(store.db, { id, kind: 'ppo', status: 'running', baseVersion: 'base', config: { steps: 20 } });
    expect(trainingRunSchema.parse(first)).toMatchObject({ id, kind: 'ppo', status: 'running', parentRunId: null, stage: null, baseVersion: 'base', config: { steps: 20 }, metrics: {}, error: null, finishedAt: null });
    expect(first.startedAt).not.toBeNull();
    const again = await createTrainingRun(store.db, { id, kind: 'ppo', config: { steps: 99 } });
    expect(again).toEqual(first);
  });

  it('sets start and finish times by status and merges summary metrics', async () => {
    const id = runId('sft');
    await createTrainingRun(store.db, { id, kind: 'sft' });
    const running = await updateTrainingRun(store.db, id, { status: 'running', metrics: { loss_first: 2.5, base_model: '/m' } });
    expect(running).toMatchObject({ status: 'running', finishedAt: null, metrics: { loss_first: 2.5, base_model: '/m' } });
    expect(running?.startedAt).not.toBeNull();
    const failed = await updateTrainingRun(store.db, id, { status: 'failed', error: 'out of memory', metrics: { loss_last: 1.25 } });
    expect(failed).toMatchObject({ status: 'failed', error: 'out of memory', startedAt: running?.startedAt, metrics: { loss_first: 2.5, loss_last: 1.25, base_model: '/m' } });
    expect(failed?.finishedAt).not.toBeNull();
    // Resumed: running again is not finished, and keeps its first start.
    const resumed = await updateTrainingRun(store.db, id, { status: 'running', error: null });
    expect(resumed).toMatchObject({ status: 'running', error: null, finishedAt: null, startedAt: running?.startedAt });
    const at = new Date('2026-01-02T03:04:05.000Z');
    expect(await updateTrainingRun(store.db, id, { status: 'succeeded', finishedAt: at })).toMatchObject({ status: 'succeeded', finishedAt: at.toISOString() });
    expect(await updateTrainingRun(store.db, 'no-such-run', { status: 'failed' })).toBeNull();
  });

  it('keeps one point per step when a resumed job logs steps again', async () => {
    const id = runId('ppo');
    await createTrainingRun(store.db, { id, kind: 'ppo', status: 'running' });
    await appendTrainingMetrics(store.db, id, [0, 1, 2, 3].map((step) => ({ step, metrics: { reward_mean: step / 10, kl: 0.01 * step } })));
    // The job died after step 3 was logged and resumes from its step-2 checkpoint.
    await appendTrainingMetrics(store.db, id, [
      { step: 3, metrics: { reward_mean: 0.35, kl: Number.NaN } },
      { step: 4, metrics: { reward_mean: 0.4, kl: 0.04 } },
      { step: 4, metrics: { reward_mean: 0.45, kl: 0.045 } },
    ]);
    await appendTrainingMetrics(store.db, id, []);
    const detail = await getTrainingRunDetail(store.db, id);
    expect(detail?.series.map((p) => p.step)).toEqual([0, 1, 2, 3, 4]);
    expect(detail?.series[3]?.metrics).toEqual({ reward_mean: 0.35, kl: null });
    expect(detail?.series[4]?.metrics).toEqual({ reward_mean: 0.45, kl: 0.045 });
    await expect(appendTrainingMetrics(store.db, id, [{ step: -1, metrics: {} }])).rejects.toThrow(/step/);
    await expect(appendTrainingMetrics(store.db, 'no-such-run', [{ step: 0, metrics: { loss: 1 } }])).rejects.toThrow();
  });

  it('describes a loop with its stages, their series and the version it produced', async () => {
    const loop = runId('loop');
    await createTrainingRun(store.db, { id: loop, kind: 'loop', status: 'running', stage: 'reward-train' });
    const rm = runId('reward-train');
    const ppo = runId('ppo');
    await createTrainingRun(store.db, { id: rm, kind: 'reward-train', parentRunId: loop, status: 'running' });
    await appendTrainingMetrics(store.db, rm, [{ step: 0, metrics: { loss: 0.69, accuracy: 0.5 } }]);
    await updateTrainingRun(store.db, rm, { status: 'succeeded' });
    await updateTrainingRun(store.db, loop, { stage: 'ppo' });
    await createTrainingRun(store.db, { id: ppo, kind: 'ppo', parentRunId: loop, status: 'running', baseVersion: 'base' });
    await appendTrainingMetrics(store.db, ppo, [{ step: 0, metrics: { reward_mean: 0.1 } }]);
    // The ppo job registers its candidate the way the existing jobs do: parent and stage stay.
    await registerCandidateVersion(store.db, {
      versionId: `policy-${ppo}`,
      role: 'policy',
      trainingRun: { id: ppo, kind: 'ppo', baseVersion: 'base', exportId: null, config: {}, startedAt: new Date(), finishedAt: new Date() },
      checkpoint: '/ckpt',
      metrics: { reward_mean_last: 0.4 },
    });

    const detail = trainingRunDetailSchema.parse(await getTrainingRunDetail(store.db, loop));
    expect(detail).toMatchObject({ id: loop, kind: 'loop', stage: 'ppo', series: [] });
    expect(detail.children.map((c) => [c.id, c.kind, c.status, c.parentRunId])).toEqual([
      [rm, 'reward-train', 'succeeded', loop],
      [ppo, 'ppo', 'succeeded', loop],
    ]);
    expect(detail.versions).toEqual([{ id: `policy-${ppo}`, role: 'policy', status: 'candidate', runId: ppo }]);
    const ppoDetail = await getTrainingRunDetail(store.db, ppo);
    expect(ppoDetail).toMatchObject({ parentRunId: loop, metrics: { reward_mean_last: 0.4 }, series: [{ step: 0, metrics: { reward_mean: 0.1 } }] });
    expect(ppoDetail?.versions.map((v) => v.id)).toEqual([`policy-${ppo}`]);
    expect(await getTrainingRunDetail(store.db, 'no-such-run')).toBeNull();

    const stages = await listTrainingRuns(store.db, { parentRunId: loop, limit: 10 });
    expect(stages.map((r) => r.id)).toEqual([ppo, rm]);
  });

  it('pages top-level runs newest first, by kind', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const id = runId('dpo');
      ids.push(id);
      await createTrainingRun(store.db, { id, kind: 'dpo' });
    }
    const child = runId('eval');
    await createTrainingRun(store.db, { id: child, kind: 'eval', parentRunId: ids[0] });
    const newest = [...ids].reverse();
    const page1 = await listTrainingRuns(store.db, { kind: 'dpo', parentRunId: null, limit: 3 });
    expect(page1.map((r) => r.id)).toEqual(newest.slice(0, 3));
    // (The first test made one older dpo run too.)
    const page2 = await listTrainingRuns(store.db, { kind: 'dpo', parentRunId: null, limit: 2, before: page1[2]!.id });
    expect(page2.map((r) => r.id)).toEqual(newest.slice(3));
    const topLevel = await listTrainingRuns(store.db, { parentRunId: null, limit: 500 });
    expect(topLevel.map((r) => r.id)).not.toContain(child);
    expect((await listTrainingRuns(store.db, { limit: 500 })).map((r) => r.id)).toContain(child);
    expect(await listTrainingRuns(store.db, { limit: 10, before: 'no-such-run' })).toEqual([]);
  });
});
