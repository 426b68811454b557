/**
 * The admin API's training runs and RL loop end to end: the compiled gateway on a private nats-server and a
 * throwaway database on this machine's Postgres. Runs and their metric series are seeded through the store
 * functions the trainer calls and read back over HTTP with a real session; the loop routes are answered by a
 * stand-in trainer (a raw NATS subscription on trainer.loop speaking Nest's wire format, keeping its state),
 * and give a 503 when nothing answers. Last, the compiled trainer on the same NATS, database and a Redis prefix of
 * this run: a start with nothing (or too little) to train on is an error with the reason, a running loop's stage
 * and step come from its BullMQ jobs, and a loop whose reward-train stage fails leaves the loop run and the stage
 * run both failed with the stage's error.
 */
import path from 'node:path';
import { Queue } from 'bullmq';
import IORedis from 'ioredis';
import { JSONCodec, type NatsConnection, type Subscription } from 'nats';
import {
  adminRunListSchema,
  LOOP_SUBJECT,
  loopControlRequestSchema,
  loopStatusSchema,
  nestRequestPacketSchema,
  newTimeOrderedId,
  QUEUES,
  trainingRunDetailSchema,
  type LoopStartRequest,
  type LoopStatus,
} from '@flywheel/contracts';
import { MeshClient } from '@flywheel/mesh';
import {
  appendTrainingMetrics,
  applyReview,
  createTrainingRun,
  registerCandidateVersion,
  updateTrainingRun,
  writeCompletion,
  type Store,
} from '@flywheel/store';
import { completionRecord } from '@flywheel/store/testing';
import { startAdminGateway, type AdminGateway } from './support/admin-gateway';
import { getJson, portsEnv, repoRoot, run, serviceEntry, stop, waitFor } from './support/processes';

jest.setTimeout(180_000);

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const USER_KEY = 'sk-flywheel-runs-test-user';
const ADMIN_KEY = 'sk-flywheel-runs-test-admin';

let fixture: AdminGateway;
let gatewayUrl: string;
let nc: NatsConnection;
let store: Store;

beforeAll(async () => {
  fixture = await startAdminGateway({ userKey: USER_KEY, adminKey: ADMIN_KEY, name: 'runs-test' });
  ({ gatewayUrl, nc, store } = fixture);
});

afterAll(async () => {
  await fixture?.close();
});

interface Session {
  cookie: string;
  csrf: string;
}

async function login(): Promise<Session> {
  const res = await fetch(`${gatewayUrl}/admin/api/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: ADMIN_KEY }) });
  expect(res.status).toBe(200);
  const body: any = await res.json();
  return { cookie: (res.headers.get('set-cookie') ?? '').split(';')[0] ?? '', csrf: body.csrf_token };
}

async function call(method: string, route: string, session: Session | null, body?: unknown, csrf = session?.csrf): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = {};
  if (session) headers.cookie = session.cookie;
  if (csrf) headers['x-csrf-token'] = csrf;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${gatewayUrl}${route}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/**
 * A stand-in for the trainer's loop handler: raw NATS in Nest's wire format ({pattern, data, id} →
 * {id, response | err, isDisposed}), what MeshClient sends and a @MessagePattern handler answers.
 */
function fakeTrainerLoop(connection: NatsConnection): { sub: Subscription; state: LoopStatus; actions: string[] } {
  const codec = JSONCodec<unknown>();
  const state: LoopStatus = { paused: false, running: null, approvedSinceLastRun: 7, minNewApproved: 50, scheduleMs: 60_000, lastRun: null };
  const actions: string[] = [];
  const sub = connection.subscribe(LOOP_SUBJECT, {
    callback: (_err, msg) => {
      const packet = nestRequestPacketSchema.parse(codec.decode(msg.data));
      const request = loopControlRequestSchema.safeParse(packet.data);
      if (!request.success) {
        msg.respond(codec.encode({ id: packet.id, err: { code: 'invalid_payload', message: 'action: invalid', param: 'action' }, isDisposed: true }));
        return;
      }
      actions.push(request.data.action);
      let refused: LoopStatus['refused'];
      if (request.data.action === 'pause') state.paused = true;
      if (request.data.action === 'resume') state.paused = false;
      if (request.data.action === 'start') {
        if (state.running) refused = { code: 'already_running', message: 'loop-manual-1 is already active' };
        else state.running = { runId: 'loop-manual-1', stage: 'reward-train', startedAt: new Date().toISOString() };
      }
      msg.respond(codec.encode({ id: packet.id, response: { ...state, ...(refused ? { message: refused.message, refused } : {}) }, isDisposed: true }));
    },
  });
  return { sub, state, actions };
}

describe('admin runs API', () => {
  it('lists top-level runs newest first, pages them, and shows a loop with its stages, series and versions', async () => {
    const session = await login();
    const sft = `sft-${newTimeOrderedId()}`;
    await createTrainingRun(store.db, { id: sft, kind: 'sft', status: 'running', config: { steps: 3 } });
    await appendTrainingMetrics(store.db, sft, [0, 1, 2].map((step) => ({ step, metrics: { loss: 3 - step, lr: 1e-3, grad_norm: 0.5 } })));
    await updateTrainingRun(store.db, sft, { status: 'succeeded', metrics: { train_loss_last: 1 } });

    const loop = `loop-${newTimeOrderedId()}`;
    const rm = `rm-${newTimeOrderedId()}`;
    const ppo = `ppo-${newTimeOrderedId()}`;
    await createTrainingRun(store.db, { id: loop, kind: 'loop', status: 'running', stage: 'reward-train', baseVersion: 'base' });
    await createTrainingRun(store.db, { id: rm, kind: 'reward-train', status: 'running', parentRunId: loop });
    await updateTrainingRun(store.db, rm, { status: 'succeeded', metrics: { heldout_accuracy: 0.8 } });
    await updateTrainingRun(store.db, loop, { stage: 'ppo' });
    await createTrainingRun(store.db, { id: ppo, kind: 'ppo', status: 'running', parentRunId: loop, baseVersion: 'base' });
    await appendTrainingMetrics(
      store.db,
      ppo,
      Array.from({ length: 5 }, (_, step) => ({ step, metrics: { reward_mean: 0.1 * step, reward_std: 0.05, kl: 0.01 * step, clip_fraction: 0.1 } })),
    );
    await registerCandidateVersion(store.db, {
      versionId: `policy-${ppo}`,
      role: 'policy',
      trainingRun: { id: ppo, kind: 'ppo', baseVersion: 'base', exportId: null, config: {}, startedAt: new Date(), finishedAt: new Date() },
      checkpoint: '/tmp/ckpt',
      metrics: { reward_mean_last: 0.4 },
    });

    const list = await call('GET', '/admin/api/runs', session);
    expect(list.status).toBe(200);
    adminRunListSchema.parse(list.body);
    expect(list.body).toMatchObject({ object: 'list', has_more: false });
    // Stage runs are not top-level.
    expect(list.body.data.map((r: any) => r.id)).toEqual([loop, sft]);
    expect(list.body.data[0]).toMatchObject({ kind: 'loop', status: 'running', stage: 'ppo', parentRunId: null, baseVersion: 'base', error: null, finishedAt: null });
    expect(list.body.data[1]).toMatchObject({ kind: 'sft', status: 'succeeded', metrics: { train_loss_last: 1 } });

    const page1 = await call('GET', '/admin/api/runs?limit=1', session);
    expect(page1.body).toMatchObject({ has_more: true, data: [{ id: loop }] });
    const page2 = await call('GET', `/admin/api/runs?limit=1&before=${loop}`, session);
    expect(page2.body).toMatchObject({ has_more: false, data: [{ id: sft }] });
    expect((await call('GET', '/admin/api/runs?kind=sft', session)).body.data.map((r: any) => r.id)).toEqual([sft]);
    const badKind = await call('GET', '/admin/api/runs?kind=magic', session);
    expect(badKind.status).toBe(400);
    expect(badKind.body.error).toMatchObject({ type: 'invalid_request_error', param: 'kind' });

    const detail = await call('GET', `/admin/api/runs/${loop}`, session);
    expect(detail.status).toBe(200);
    trainingRunDetailSchema.parse(detail.body);
    expect(detail.body).toMatchObject({ id: loop, kind: 'loop', stage: 'ppo', series: [], versions: [{ id: `policy-${ppo}`, role: 'policy', status: 'candidate', runId: ppo }] });
    expect(detail.body.children.map((c: any) => [c.id, c.kind, c.status])).toEqual([
      [rm, 'reward-train', 'succeeded'],
      [ppo, 'ppo', 'succeeded'],
    ]);

    const ppoDetail = await call('GET', `/admin/api/runs/${ppo}`, session);
    expect(ppoDetail.body.parentRunId).toBe(loop);
    expect(ppoDetail.body.series.map((p: any) => p.step)).toEqual([0, 1, 2, 3, 4]);
    expect(ppoDetail.body.series[4].metrics).toEqual({ reward_mean: 0.4, reward_std: 0.05, kl: 0.04, clip_fraction: 0.1 });
    expect(ppoDetail.body.metrics).toEqual({ reward_mean_last: 0.4 });

    const missing = await call('GET', '/admin/api/runs/no-such-run', session);
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ type: 'invalid_request_error', code: 'run_not_found', param: 'id' });
    expect((await call('GET', '/admin/api/runs', null)).status).toBe(401);
  });

  it('says 503 when no trainer answers on trainer.loop, or one hangs', async () => {
    const session = await login();
    const status = await call('GET', '/admin/api/loop', session);
    expect(status.status).toBe(503);
    expect(status.body.error).toMatchObject({ type: 'server_error', code: 'service_unavailable' });
    expect(status.body.error.message).toMatch(/trainer/);
    const pause = await call('POST', '/admin/api/loop', session, { action: 'pause' });
    expect(pause.status).toBe(503);

    // A hung trainer (subscribed, never answering) is a 503 too, after the loop's short timeout.
    const hung = nc.subscribe(LOOP_SUBJECT, { callback: () => undefined });
    await nc.flush();
    try {
      const t0 = Date.now();
      const res = await call('GET', '/admin/api/loop', session);
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe('service_unavailable');
      expect(Date.now() - t0).toBeLessThan(8_000);
    } finally {
      hung.unsubscribe();
    }
  });

  it('forwards status, pause, resume and start to the trainer and returns its loop status', async () => {
    const session = await login();
    const trainer = fakeTrainerLoop(nc);
    await nc.flush();
    try {
      const status = await call('GET', '/admin/api/loop', session);
      expect(status.status).toBe(200);
      expect(loopStatusSchema.parse(status.body)).toEqual({ paused: false, running: null, approvedSinceLastRun: 7, minNewApproved: 50, scheduleMs: 60_000, lastRun: null });

      const paused = await call('POST', '/admin/api/loop', session, { action: 'pause' });
      expect(paused.status).toBe(200);
      expect(paused.body.paused).toBe(true);
      expect((await call('GET', '/admin/api/loop', session)).body.paused).toBe(true);
      const started = await call('POST', '/admin/api/loop', session, { action: 'start' });
      expect(started.body.running).toMatchObject({ runId: 'loop-manual-1', stage: 'reward-train' });
      // A refused start is no 200: the trainer's reason travels as the error's message.
      const again = await call('POST', '/admin/api/loop', session, { action: 'start' });
      expect(again.status).toBe(409);
      expect(again.body.error).toEqual({ type: 'invalid_request_error', code: 'loop_already_running', param: null, message: 'The loop did not start: loop-manual-1 is already active.' });
      expect((await call('POST', '/admin/api/loop', session, { action: 'resume' })).body.paused).toBe(false);
      expect(trainer.actions).toEqual(['status', 'pause', 'status', 'start', 'start', 'resume']);

      // Bad bodies stop at the gateway; a write without the CSRF token never reaches the trainer.
      const bad = await call('POST', '/admin/api/loop', session, { action: 'status' });
      expect(bad.status).toBe(400);
      expect(bad.body.error).toMatchObject({ type: 'invalid_request_error', param: 'action' });
      expect((await call('POST', '/admin/api/loop', session, { action: 'pause', extra: 1 })).status).toBe(400);
      const noCsrf = await call('POST', '/admin/api/loop', session, { action: 'pause' }, '');
      expect(noCsrf.status).toBe(403);
      expect(noCsrf.body.error.code).toBe('csrf_failed');
      expect(trainer.actions).toHaveLength(6);
    } finally {
      trainer.sub.unsubscribe();
    }
  });

  it('says 502 when the trainer answers something that is not a loop status', async () => {
    const session = await login();
    const codec = JSONCodec<any>();
    const sub = nc.subscribe(LOOP_SUBJECT, {
      callback: (_err, msg) => {
        const packet = codec.decode(msg.data);
        msg.respond(codec.encode({ id: packet.id, response: { paused: 'maybe' }, isDisposed: true }));
      },
    });
    await nc.flush();
    try {
      const res = await call('GET', '/admin/api/loop', session);
      expect(res.status).toBe(502);
      expect(res.body.error).toMatchObject({ type: 'server_error', code: 'upstream_error' });
    } finally {
      sub.unsubscribe();
    }
  });

  it('with the compiled trainer: refused starts say why, a running loop shows its stage and step, a failed stage is on both runs', async () => {
    const session = await login();
    const prefix = `fwtest-runs-${process.pid}-${Date.now()}`;
    const env: Record<string, string> = {
      ...(await portsEnv()),
      NATS_URL: fixture.nats.url,
      REDIS_URL,
      DATABASE_URL: fixture.database.url,
      FLYWHEEL_STATE_DIR: path.join(fixture.stateDir, 'trainer'),
      FLYWHEEL_QUEUE_PREFIX: prefix,
      FLYWHEEL_MODEL: path.join(repoRoot, 'models', 'stories260K'),
      FLYWHEEL_LOOP_MIN_NEW_APPROVED: '0',
    };
    const trainer = run(process.execPath, [serviceEntry('trainer')], env);
    const redis = new IORedis(REDIS_URL, { maxRetriesPerRequest: null });
    const loopQueue = new Queue(QUEUES.loop, { connection: redis, prefix });
    const ppoQueue = new Queue(QUEUES.ppo, { connection: redis, prefix });
    const start = () => call('POST', '/admin/api/loop', session, { action: 'start' });
    try {
      await waitFor(async () => ((await getJson(`http://127.0.0.1:${env.FLYWHEEL_TRAINER_PORT}/readyz`)).status === 200 ? true : undefined), 30_000, 'trainer ready').catch((err) => {
        throw new Error(`${String(err)}\n--- trainer ---\n${trainer.output().slice(-3000)}`);
      });

      // Nothing approved yet, then one pair: nothing queued, and the answer says why.
      const none = await start();
      expect(none.status).toBe(409);
      expect(none.body.error).toMatchObject({ type: 'invalid_request_error', code: 'no_training_data' });
      expect(none.body.error.message).toMatch(/^The loop did not start: no approved preference pairs to train on yet/);
      await writeCompletion(store.db, completionRecord('cmpl-runs-one-pair'));
      expect((await applyReview(store.db, 'admin-test', { action: 'choose', completion_id: 'cmpl-runs-one-pair', chosen: 0, rejected: 1 })).ok).toBe(true);
      const few = await start();
      expect(few.status).toBe(409);
      expect(few.body.error.code).toBe('no_training_data');
      expect(few.body.error.message).toMatch(/too few approved preference pairs to train on: 1 approved preference pair on 1 distinct prompt/);
      expect(await loopQueue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed')).toEqual({ waiting: 0, active: 0, delayed: 0, failed: 0, completed: 0 });

      // A loop job in its ppo stage (delayed, so no worker takes it) with its ppo job at step 3 of 10, then 7.
      const held = await loopQueue.add(QUEUES.loop, {}, { delay: 3_600_000 });
      await held.updateProgress({ stage: 'ppo' });
      const runId = `loop-${held.id}-${held.timestamp.toString(36)}`;
      const ppoJob = await ppoQueue.add(QUEUES.ppo, {}, { jobId: `${runId}-ppo`, delay: 3_600_000 });
      await ppoJob.updateProgress({ step: 3, steps: 10, reward_mean: 0.1 });
      const s1 = await call('GET', '/admin/api/loop', session);
      expect(s1.body.running).toMatchObject({ runId, stage: 'ppo', progress: { step: 3, steps: 10 } });
      await ppoJob.updateProgress({ step: 7, steps: 10, reward_mean: 0.2 });
      expect((await call('GET', '/admin/api/loop', session)).body.running.progress).toEqual({ step: 7, steps: 10 });
      const busy = await start();
      expect(busy.status).toBe(409);
      expect(busy.body.error).toMatchObject({ code: 'loop_already_running', message: `The loop did not start: ${runId} is already delayed.` });
      await held.remove();
      await ppoJob.remove();

      // A loop on data its reward-train stage cannot read: the stage fails, and the loop run and the stage run say so.
      const missing = path.join(fixture.stateDir, 'no-such-pairs.jsonl');
      const request: LoopStartRequest = { action: 'start', data: { kind: 'jsonl', path: missing } };
      const started = await new MeshClient(nc).request(LOOP_SUBJECT, request, loopStatusSchema, { timeoutMs: 10_000 });
      const loopRun = started.running?.runId;
      if (!loopRun) throw new Error(`the trainer did not start a loop run: ${started.message ?? '?'}`);
      const failed = await waitFor(
        async () => {
          const r = await call('GET', `/admin/api/runs/${loopRun}`, session);
          return r.body?.status === 'failed' && r.body.children[0]?.status === 'failed' ? r.body : undefined;
        },
        60_000,
        'the loop run to fail',
      ).catch((err) => {
        throw new Error(`${String(err)}\n--- trainer ---\n${trainer.output().slice(-3000)}`);
      });
      expect(failed).toMatchObject({ kind: 'loop', stage: 'reward-train', error: expect.stringContaining('no-such-pairs.jsonl') });
      expect(failed.error).toMatch(/ENOENT/);
      expect(failed.children).toEqual([expect.objectContaining({ id: `rm-${loopRun}-rm`, kind: 'reward-train', status: 'failed', error: failed.error })]);
      const row = (await call('GET', '/admin/api/runs?kind=loop', session)).body.data.find((r: any) => r.id === loopRun);
      expect(row).toMatchObject({ status: 'failed', stage: 'reward-train', error: failed.error });
      expect((await call('GET', '/admin/api/loop', session)).body.lastRun).toMatchObject({ runId: loopRun, status: 'failed' });
    } finally {
      await stop(trainer);
      await loopQueue.close();
      await ppoQueue.close();
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
    }
  });
});
