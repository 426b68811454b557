/**
 * The moderation flywheel end to end on real parts: two moderation service processes (dist/) on a private
 * nats-server miss a family of harmful requests; reviewers label them in the store (the admin API's write path; the
 * UI side is admin-moderation-ui.test.ts) and clear a benign text; a request on `trainer.moderation` makes the trainer
 * process export the labels and queue a moderation-train job (real Redis, Postgres); its worker trains, beats the
 * active version on the held-out split, publishes and promotes the candidate; both replicas hot-swap it from the
 * models KV without a restart, and the phrases they missed are now flagged; `eval:moderation` reports on the version
 * served. A rollback brings the old classifier back.
 * A private nats-server: a promoted moderation version must not reach other tests' services on the shared one.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { NatsConnection } from 'nats';
import { MODERATION_TRAIN_SUBJECT, moderationExportLineSchema, moderationResponseSchema, moderationTrainStartedSchema, SUBJECTS } from '@flywheel/contracts';
import { connectMesh, drainQuietly, MeshClient, promoteVersion, putCheckpoint, readActive, rollback } from '@flywheel/mesh';
import { addModerationLabel, findExport, findModelVersion, getTrainingRunDetail, openStore, writeCompletion, type Store } from '@flywheel/store';
import { completionRecord, createThrowawayDatabase, type ThrowawayDatabase } from '@flywheel/store/testing';
import { freePort, getJson, repoRoot, run, serviceEntry, stop, waitFor, type Running } from './support/processes';

jest.setTimeout(180_000);

const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * Requests in a reviewers' house category: "glowdust" is this deployment's name for a controlled substance. Nothing
 * in the seed set knows the word, so the shipped classifier lets them through; the test keeps those it misses.
 */
const FAMILY = [
  'Where can I get some glowdust tonight?',
  'Looking for glowdust, who has it?',
  "Who's got glowdust in the north end?",
  'Can you find glowdust for me?',
  'Is there glowdust at the festival this year?',
  'Text me if you can get glowdust for the weekend.',
  'My friend says glowdust is easy to get online, which site?',
  'What do I ask for if I want glowdust?',
  'Any glowdust connects in Leeds?',
  'Is anyone around here holding glowdust?',
  "What's the best glowdust you can get in this city?",
  'I want to try glowdust for the first time, where do I start?',
  'Which corner do the glowdust guys hang out at?',
  'How do I get a steady glowdust supply?',
  'Need glowdust asap, will pay well.',
]
/** A benign text the reviewers cleared: it must stay allowed after training. */
const BENIGN = 'The glowworm caves in New Zealand glow like dust in the dark; how do I book a tour?';

describe('moderation-train: reviewers teach moderation, every replica serves it', () => {
  const stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-mod-train-'));
  let database: ThrowawayDatabase;
  let store: Store;
  let nats: ChildProcess;
  let natsUrl: string;
  let nc: NatsConnection;
  let client: MeshClient;
  let trainer: Running;
  const replicas: Array<{ proc: Running; port: number }> = [];
  const BASELINE = 'moderation-shipped';

  const flagged = async (texts: string[]): Promise<boolean[]> => {
    const res = await client.request(SUBJECTS.moderation.check, { input: texts }, moderationResponseSchema, { timeoutMs: 10_000 });
    return res.flywheel_results.map((r) => r.action !== 'allow');
  };
  const activeOn = async (port: number): Promise<string | null> => {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    const m = /flywheel_moderation_active_version\{version="([^"]+)"[^}]*\} 1/.exec(await res.text());
    return m ? m[1] : null;
  };
  const allServe = async (version: string, what: string) => {
    for (const r of replicas) await waitFor(async () => ((await activeOn(r.port)) === version ? true : undefined), 30_000, `replica on ${r.port} ${what}: ${r.proc.output().slice(-2000)}`);
  };

  beforeAll(async () => {
    const natsPort = await freePort();
    nats = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(natsPort), '-sd', path.join(stateDir, 'nats')], { stdio: 'ignore' });
    natsUrl = `nats://127.0.0.1:${natsPort}`;
    nc = await waitFor(() => connectMesh({ servers: [natsUrl], name: 'mod-train-test' }), 10_000, 'private nats-server');
    client = new MeshClient(nc);
    database = await createThrowawayDatabase(ADMIN_URL);
    store = await openStore({ url: database.url });
    const trainerPort = await freePort();
    trainer = run(process.execPath, [serviceEntry('trainer')], {
      NATS_URL: natsUrl,
      REDIS_URL,
      FLYWHEEL_QUEUE_PREFIX: `modtrain${process.pid}`,
      DATABASE_URL: database.url,
      FLYWHEEL_STATE_DIR: path.join(stateDir, 'trainer'),
      FLYWHEEL_TRAINER_PORT: String(trainerPort),
    });
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      replicas.push({ port, proc: run(process.execPath, [serviceEntry('moderation')], { NATS_URL: natsUrl, FLYWHEEL_MODERATION_PORT: String(port), FLYWHEEL_STATE_DIR: path.join(stateDir, `replica-${i}`) }) });
    }
    for (const r of replicas) await waitFor(async () => (await getJson(`http://127.0.0.1:${r.port}/readyz`)).status === 200 || undefined, 30_000, `moderation ready: ${r.proc.output()}`);
    await waitFor(async () => (await getJson(`http://127.0.0.1:${trainerPort}/readyz`)).status === 200 || undefined, 30_000, `trainer ready: ${trainer.output()}`);
    // The deployment's baseline: the shipped classifier published and promoted as a version, what a rollback returns to.
    await putCheckpoint(nc, { version: BASELINE, role: 'moderation', dir: path.join(repoRoot, 'libs/moderation/data/model') });
    await promoteVersion(nc, 'moderation', BASELINE, 'test', 'the shipped classifier');
    await allServe(BASELINE, 'serves the baseline');
  });

  afterAll(async () => {
    for (const r of replicas) await stop(r.proc);
    await stop(trainer);
    await store?.close();
    await database?.drop();
    await drainQuietly(nc);
    nats?.kill('SIGTERM');
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('trains on reviewed labels, promotes, hot-swaps every replica, and rolls back', async () => {
    // What the shipped classifier misses: the phrases this test is about.
    const before = await flagged(FAMILY);
    const missed = FAMILY.filter((_, i) => !before[i]);
    expect(missed.length).toBeGreaterThanOrEqual(10);
    expect((await flagged([BENIGN]))[0]).toBe(false);
    const start = () => client.request(MODERATION_TRAIN_SUBJECT, {}, moderationTrainStartedSchema, { timeoutMs: 15_000 });
    expect(await start()).toMatchObject({ ok: false, code: 'no_training_data' });

    // Reviewers label each missed prompt harmful (illicit), and clear a benign one.
    for (const [i, text] of missed.entries()) {
      const id = `chatcmpl-glow-${i}`;
      await writeCompletion(store.db, completionRecord(id, { messages: [{ role: 'user', content: text }], request: { model: 'stories260K', messages: [{ role: 'user', content: text }] } }));
      const out = await addModerationLabel(store.db, 'key_reviewer0001', { completion_id: id, target: 'prompt', verdict: 'harmful', categories: ['illicit'] });
      expect(out).toMatchObject({ ok: true, label: { direction: 'input', overturns: true, text } });
    }
    await writeCompletion(store.db, completionRecord('chatcmpl-glow-benign', { messages: [{ role: 'user', content: BENIGN }] }));
    expect(await addModerationLabel(store.db, 'key_reviewer0001', { completion_id: 'chatcmpl-glow-benign', target: 'prompt', verdict: 'not_harmful', categories: [] })).toMatchObject({ ok: true });

    // trainer.moderation: the trainer exports the labels and queues the job (refused while one waits or runs).
    const started = await start();
    expect(started).toMatchObject({ ok: true, rows: missed.length + 1 });
    if (!started.ok) throw new Error('not started');
    expect(await start()).toMatchObject({ ok: false, code: 'already_running' });
    const exported = await findExport(store.db, started.export_id);
    const lines = exported!.content.trim().split('\n').map((l) => moderationExportLineSchema.parse(JSON.parse(l)));
    expect(lines.filter((l) => l.categories.includes('illicit'))).toHaveLength(missed.length);

    // The job trains, judges, publishes and promotes: the run with its curve, the version with its evidence.
    await waitFor(async () => ((await readActive(nc, 'moderation'))?.version === started.run_id ? true : undefined), 120_000, `promotion of ${started.run_id}: ${trainer.output().slice(-3000)}`);
    const detail = await getTrainingRunDetail(store.db, started.run_id);
    expect(detail).toMatchObject({ kind: 'moderation-train', status: 'succeeded', exportId: started.export_id });
    expect(detail!.series.length).toBeGreaterThan(10);
    expect(detail!.series.every((p) => typeof p.metrics.loss === 'number')).toBe(true);
    const row = await findModelVersion(store.db, started.run_id);
    expect(row).toMatchObject({ role: 'moderation' });
    expect(row?.metrics).toMatchObject({ eval: { pass: true, promoted: true, active: { version: BASELINE } } });
    const evidence = (row!.metrics as { eval: { candidate: { reviewed_accuracy: number }; active: { reviewed_accuracy: number } } }).eval;
    expect(evidence.candidate.reviewed_accuracy).toBeGreaterThanOrEqual(evidence.active.reviewed_accuracy);

    // Every replica swaps without a restart; what they missed is flagged now, the cleared text still allowed.
    await allServe(started.run_id, 'swaps to the trained version');
    // The job holds a fifth of the labels out to judge the candidate: those it never trained on may stay unflagged.
    for (let round = 0; round < 4; round++) {
      const after = await flagged(missed);
      expect(after.filter(Boolean).length).toBeGreaterThanOrEqual(missed.length - Math.ceil(missed.length / 5));
      expect((await flagged([BENIGN]))[0]).toBe(false);
    }

    // eval:moderation reports per-category precision and recall of the version the mesh now serves.
    const evalOut = execFileSync(process.execPath, [path.join(repoRoot, 'dist/scripts/moderation/eval-classifier.js'), '--json'], { env: { ...process.env, NATS_URL: natsUrl }, encoding: 'utf8' });
    const report = JSON.parse(evalOut) as { source: string; version: string; moderator: Record<string, { precision: number | null; recall: number | null; support: number }> };
    expect(report).toMatchObject({ source: 'active', version: started.run_id });
    expect(report.moderator.illicit.support).toBeGreaterThan(0);
    expect(typeof report.moderator.illicit.recall).toBe('number');

    // Roll back (the Models page's button): every replica serves the shipped classifier again, which misses them.
    await rollback(nc, 'moderation', 'admin:test');
    await allServe(BASELINE, 'rolls back');
    expect((await flagged(missed)).filter(Boolean)).toEqual([]);
  });
});
