/**
 * RunRecorder on this machine's Postgres (a throwaway database): the run row is created once and set running, step
 * metrics are cleaned (numbers only, non-finite as null), buffered and written on the next flush, re-logged steps
 * overwrite, track() marks a failed training failed (a pause leaves it running) and flushes either way; and a store
 * that is down never fails training: its points wait for the next flush that succeeds.
 */
import { Logger } from '@nestjs/common';
import type { Kysely } from 'kysely';
import { loadTrainerConfig } from '@flywheel/config';
import { findTrainingRun, type StoreTables } from '@flywheel/store';
import { createThrowawayDatabase, type ThrowawayDatabase } from '@flywheel/store/testing';
import { cleanMetrics, RunRecorder } from './run.recorder';
import { TrainerStore } from './trainer.store';

jest.setTimeout(30_000);

const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';

/** The real store, which can be switched off: every use fails while `down`. */
class SwitchableStore extends TrainerStore {
  down = false;
  override use<T>(fn: (db: Kysely<StoreTables>) => Promise<T>): Promise<T> {
    return this.down ? Promise.reject(new Error('store down for the spec')) : super.use(fn);
  }
}

describe('cleanMetrics', () => {
  it('keeps numbers (non-finite as null) and drops the step counters and everything else', () => {
    expect(cleanMetrics({ step: 3, steps: 10, loss: 1.5, zero: 0, nan: NaN, inf: -Infinity, label: 'x', ok: true, nested: { a: 1 } })).toEqual({ loss: 1.5, zero: 0, nan: null, inf: null });
  });
});

describe('RunRecorder (real Postgres)', () => {
  let database: ThrowawayDatabase;
  let store: SwitchableStore;
  let n = 0;
  const runId = () => `sft-recorder-${process.pid}-${++n}`;
  const points = (id: string) =>
    store.use((db) => db.selectFrom('training_metrics').select(['step', 'metrics']).where('run_id', '=', id).orderBy('step').execute());
  const run = (id: string) => store.use((db) => findTrainingRun(db, id));

  beforeAll(async () => {
    Logger.overrideLogger(false);
    database = await createThrowawayDatabase(ADMIN_URL);
    store = new SwitchableStore(loadTrainerConfig({ DATABASE_URL: database.url }));
  });
  afterAll(async () => {
    await store?.onApplicationShutdown();
    await database?.drop();
  });
  afterEach(() => {
    store.down = false;
  });

  it('creates the run once, running, with its lineage; starting again (a retried job) keeps it and clears its error', async () => {
    const id = runId();
    const rec = new RunRecorder(store, id);
    await rec.start('sft', { parentRunId: null, baseVersion: 'base', exportId: null, config: { steps: 3 }, stage: 'train' });
    expect(await run(id)).toMatchObject({ id, kind: 'sft', status: 'running', baseVersion: 'base', config: { steps: 3 }, stage: 'train', error: null, finishedAt: null });
    await rec.patch({ status: 'failed', error: 'boom' });
    expect(await run(id)).toMatchObject({ status: 'failed', error: 'boom' });
    await new RunRecorder(store, id).start('sft', { config: { steps: 99 } });
    expect(await run(id)).toMatchObject({ status: 'running', error: null, config: { steps: 3 }, finishedAt: null });
  });

  it('writes the first step at once, buffers the next few seconds of steps until a flush, and overwrites re-logged steps', async () => {
    const id = runId();
    const rec = new RunRecorder(store, id);
    await rec.start('sft', {});
    await rec.step(1, { step: 1, steps: 3, loss: 2, gradNorm: NaN });
    expect(await points(id)).toEqual([{ step: 1, metrics: { loss: 2, gradNorm: null } }]);
    await rec.step(2, { step: 2, steps: 3, loss: 1.5 });
    await rec.step(1, { step: 1, steps: 3, loss: 1.9 });
    expect(await points(id)).toHaveLength(1); // buffered
    await rec.flush();
    expect(await points(id)).toEqual([
      { step: 1, metrics: { loss: 1.9 } },
      { step: 2, metrics: { loss: 1.5 } },
    ]);
  });

  it('track: returns the result and flushes; a failure marks the run failed with its message; a pause leaves it running', async () => {
    const ok = runId();
    const okRec = new RunRecorder(store, ok);
    await okRec.start('sft', {});
    await okRec.step(1, { loss: 3 });
    expect(await okRec.track(async () => (await okRec.step(2, { loss: 2 }), 'trained'))).toBe('trained');
    expect((await points(ok)).map((p) => p.step)).toEqual([1, 2]);
    expect((await run(ok))?.status).toBe('running'); // the job sets succeeded once registered

    const failed = runId();
    const failRec = new RunRecorder(store, failed);
    await failRec.start('sft', {});
    await failRec.step(1, { loss: 3 });
    const boom = new Error('out of memory at step 2');
    await expect(failRec.track(async () => (await failRec.step(2, { loss: 2 }), Promise.reject(boom)))).rejects.toBe(boom);
    expect(await run(failed)).toMatchObject({ status: 'failed', error: 'out of memory at step 2' });
    expect((await run(failed))?.finishedAt).not.toBeNull();
    expect((await points(failed)).map((p) => p.step)).toEqual([1, 2]);

    const paused = runId();
    const pauseRec = new RunRecorder(store, paused);
    await pauseRec.start('sft', {});
    await pauseRec.step(1, { loss: 3 });
    const stop = new Error('stopping for shutdown');
    await expect(pauseRec.track(async () => (await pauseRec.step(2, { loss: 2 }), Promise.reject(stop)), (err) => err === stop)).rejects.toBe(stop);
    expect(await run(paused)).toMatchObject({ status: 'running', error: null });
    expect((await points(paused)).map((p) => p.step)).toEqual([1, 2]);
  });

  it('retries a final status through a store blip, so a finished run does not stay running', async () => {
    const id = runId();
    const rec = new RunRecorder(store, id, 50);
    await rec.start('sft', {});
    store.down = true;
    const patched = rec.patch({ status: 'succeeded', metrics: { steps: 3 } });
    await new Promise((resolve) => setTimeout(resolve, 120)); // two tries fail meanwhile
    store.down = false;
    await patched;
    expect(await run(id)).toMatchObject({ status: 'succeeded' });
  });

  it('never fails training when the store is down, and writes the points it kept once the store is back', async () => {
    const id = runId();
    const rec = new RunRecorder(store, id, 1);
    await rec.start('sft', {});
    store.down = true;
    await expect(rec.step(1, { loss: 3 })).resolves.toBeUndefined();
    await expect(rec.step(2, { loss: 2 })).resolves.toBeUndefined();
    await expect(rec.flush()).resolves.toBeUndefined();
    await expect(rec.patch({ metrics: { note: 'lost' } })).resolves.toBeUndefined();
    // The training's own error, not the store's, comes out of track().
    const boom = new Error('the training failed');
    await expect(rec.track(() => Promise.reject(boom))).rejects.toBe(boom);
    await expect(new RunRecorder(store, runId()).start('sft', {})).resolves.toBeUndefined();
    store.down = false;
    expect(await points(id)).toEqual([]);
    await rec.flush();
    expect((await points(id)).map((p) => p.step)).toEqual([1, 2]);
    expect((await run(id))?.status).toBe('running'); // the failed patch was not retried
  });
});
