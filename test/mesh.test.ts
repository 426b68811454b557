/**
 * The mesh foundation against this machine's real NATS and Redis: every service as its own process,
 * /healthz seeing all five, a killed service reported down, bad payloads answered with typed errors,
 * bad configuration stopping a service with one line, and idempotent JetStream setup.
 */
import { connect, JSONCodec, type NatsConnection } from 'nats';
import { z } from 'zod';
import { SERVICE_NAMES, STREAMS, SUBJECTS, trainerInfoSchema, type ServiceName } from '@flywheel/contracts';
import { ensureJetStream, MeshClient, MeshError } from '@flywheel/mesh';
import { getJson, portsEnv, run, serviceEntry, stop, waitFor, type Running } from './support/processes';

const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
jest.setTimeout(120_000);

describe('five services on real NATS and Redis', () => {
  let env: Record<string, string>;
  const procs = new Map<ServiceName, Running>();
  let nc: NatsConnection;
  let mesh: MeshClient;

  beforeAll(async () => {
    env = { ...(await portsEnv()), NATS_URL, FLYWHEEL_HEALTH_TIMEOUT_MS: '400' };
    nc = await connect({ servers: NATS_URL });
    mesh = new MeshClient(nc);
    for (const s of SERVICE_NAMES) procs.set(s, run(process.execPath, [serviceEntry(s)], env));
  });

  afterAll(async () => {
    await Promise.all([...procs.values()].map((p) => stop(p)));
    await nc?.drain();
  });

  const healthz = () => getJson(`http://127.0.0.1:${env.FLYWHEEL_GATEWAY_PORT}/healthz`);

  it('reports all five services up within 60 s', async () => {
    const report = await waitFor(async () => {
      const r = await healthz();
      return r.status === 200 ? r.body : undefined;
    }, 60_000, 'all services up');
    expect(report.status).toBe('ok');
    for (const s of SERVICE_NAMES) expect(report.services[s].status).toBe('up');
  });

  it('answers liveness, readiness and Prometheus metrics on each service port', async () => {
    const policyPort = env.FLYWHEEL_POLICY_PORT;
    expect((await getJson(`http://127.0.0.1:${policyPort}/livez`)).body.service).toBe('policy');
    const ready = await waitFor(async () => {
      const r = await getJson(`http://127.0.0.1:${env.FLYWHEEL_TRAINER_PORT}/readyz`);
      return r.status === 200 ? r.body : undefined;
    }, 20_000, 'trainer ready');
    expect(ready.conditions).toEqual({ nats: true, redis: true, handlers: true });
    const text = await (await fetch(`http://127.0.0.1:${env.FLYWHEEL_GATEWAY_PORT}/metrics`)).text();
    expect(text).toMatch(/flywheel_service_info\{instance="gateway-\d+",version="[\d.]+",service="gateway"\} 1/);
    expect(text).toContain('flywheel_process_cpu_seconds_total');
  });

  it('trainer.info reports its BullMQ queues from Redis', async () => {
    const info = await mesh.request(SUBJECTS.trainer.info, {}, trainerInfoSchema, { timeoutMs: 3000 });
    expect(Object.keys(info.queues).sort()).toEqual(['dpo', 'eval', 'grpo', 'kto', 'loop', 'moderation-train', 'ppo', 'reward-train', 'sft']);
    expect(info.queues.sft).toHaveProperty('waiting');
  });

  it('answers a malformed payload with a typed error and keeps serving', async () => {
    const garbage = await nc.request(SUBJECTS.ping('policy'), new TextEncoder().encode('{not json'), { timeout: 3000 });
    const reply = JSONCodec<any>().decode(garbage.data);
    expect(reply.err).toMatchObject({ code: 'invalid_payload' });
    // Wrong shape through the typed client: the field is named.
    await expect(mesh.request(SUBJECTS.ping('policy'), { from: 42 }, z.unknown(), { timeoutMs: 3000 })).rejects.toMatchObject({
      code: 'invalid_payload',
      param: 'from',
    });
    await expect(mesh.request(SUBJECTS.trainer.info, { extra: true }, z.unknown(), { timeoutMs: 3000 })).rejects.toBeInstanceOf(MeshError);
    expect((await healthz()).body.services.policy.status).toBe('up');
  });

  it('flips a killed service to down', async () => {
    procs.get('moderation')!.child.kill('SIGKILL');
    await procs.get('moderation')!.exited;
    const report = await waitFor(async () => {
      const r = await healthz();
      return r.body.services.moderation.status === 'down' ? r : undefined;
    }, 10_000, 'moderation down');
    expect(report.status).toBe(503);
    expect(report.body.status).toBe('degraded');
    expect(report.body.services.policy.status).toBe('up');
  });
});

describe('configuration errors', () => {
  it('stops a service with one line naming a non-numeric port', async () => {
    const r = run(process.execPath, [serviceEntry('policy')], { FLYWHEEL_POLICY_PORT: 'abc' });
    expect(await r.exited).toBe(78);
    const lines = r.output().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('FLYWHEEL_POLICY_PORT');
    expect(lines[0]).toContain('integer');
  });

  it('names a bad NATS_URL', async () => {
    const r = run(process.execPath, [serviceEntry('gateway')], { NATS_URL: 'http://nope' });
    expect(await r.exited).toBe(78);
    expect(r.output().trim()).toMatch(/^invalid configuration: NATS_URL must be a comma-separated list of URLs/);
  });
});

describe('JetStream setup', () => {
  it('is idempotent: a second run creates and changes nothing', async () => {
    const nc = await connect({ servers: NATS_URL });
    try {
      await ensureJetStream(nc);
      const jsm = await nc.jetstreamManager();
      const before = await jsm.streams.info(STREAMS.completions.name);
      const second = await ensureJetStream(nc);
      expect(second.created).toEqual([]);
      expect(second.existing).toEqual(expect.arrayContaining(['stream:COMPLETIONS', 'stream:FEEDBACK', 'kv:models', 'os:checkpoints']));
      const after = await jsm.streams.info(STREAMS.completions.name);
      expect(after.created).toBe(before.created);
      expect(after.config).toEqual(before.config);
    } finally {
      await nc.drain();
    }
  });
});
