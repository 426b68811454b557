/**
 * Scale out on NATS, on this machine: two policy replicas in the queue group flywheel.policy of a private
 * nats-server share generations; a replica whose queue is full (FLYWHEEL_MAX_WAITING=0) answers
 * `overloaded` and the gateway asks again, landing on the other replica; with only the full one left the
 * client gets 429 + Retry-After at once instead of waiting. Not the fault/load suite of the deploy issue.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { generateFrameSchema, SUBJECTS, type GenerateFrame } from '@flywheel/contracts';
import { MeshClient, MeshError } from '@flywheel/mesh';
import { metricValue, startPrivateNats, type PrivateNats } from './gateway.support';
import { freePort, run, serviceEntry, stop, waitFor, type Running } from './support/processes';

jest.setTimeout(180_000);

const KEY = 'sk-scale-out-test-0001';

interface Replica {
  name: string;
  proc: Running;
  metricsUrl: string;
}

let nats: PrivateNats;
let nc: NatsConnection;
let mesh: MeshClient;
let stateDir: string;
const started: Running[] = [];

async function startPolicy(name: string, extraEnv: Record<string, string>): Promise<Replica> {
  const port = await freePort();
  const proc = run(process.execPath, [serviceEntry('policy')], {
    NATS_URL: nats.url,
    FLYWHEEL_POLICY_PORT: String(port),
    FLYWHEEL_INSTANCE_ID: name,
    FLYWHEEL_LOG_LEVEL: 'warn',
    FLYWHEEL_THREADS: '1',
    ...extraEnv,
  });
  started.push(proc);
  const metricsUrl = `http://127.0.0.1:${port}/metrics`;
  await waitFor(
    async () => {
      if (proc.child.exitCode !== null) throw new Error(`${name} exited: ${proc.output().slice(-1000)}`);
      const res = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2000) });
      return res.status === 200 ? true : undefined;
    },
    90_000,
    `policy replica ${name} ready`,
  );
  return { name, proc, metricsUrl };
}

async function generatedTokens(r: Replica): Promise<number> {
  const text = await (await fetch(r.metricsUrl, { signal: AbortSignal.timeout(5000) })).text();
  return metricValue(text, 'flywheel_generation_tokens_total') ?? 0;
}

/** One generation straight over NATS (no retry): its frames, or the MeshError the replica answered. */
async function generateDirect(i: number): Promise<GenerateFrame[] | MeshError> {
  const request = { requestId: `scale-${i}-${Date.now()}`, input: { kind: 'text', text: 'Once upon a time' }, sampling: { maxTokens: 8, temperature: 0 } };
  const frames: GenerateFrame[] = [];
  try {
    for await (const f of mesh.stream(SUBJECTS.policy.generate, request, generateFrameSchema, { firstReplyTimeoutMs: 30_000, idleTimeoutMs: 30_000 })) frames.push(f);
    return frames;
  } catch (err) {
    if (err instanceof MeshError) return err;
    throw err;
  }
}

async function complete(gatewayUrl: string) {
  const res = await fetch(`${gatewayUrl}/v1/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 8, temperature: 0 }),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as { error?: { code?: string } } };
}

beforeAll(async () => {
  stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-scale-'));
  nats = await startPrivateNats();
  nc = await connect({ servers: nats.url });
  mesh = new MeshClient(nc);
});

afterAll(async () => {
  await Promise.all(started.map((p) => stop(p)));
  await nc?.drain();
  await nats?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

describe('two policy replicas in one queue group', () => {
  let a: Replica;
  let b: Replica;
  let full: Replica;
  let gatewayUrl: string;

  beforeAll(async () => {
    [a, b] = await Promise.all([startPolicy('policy-a', {}), startPolicy('policy-b', {})]);
  });

  it('split the load: both replicas serve some of 24 generations', async () => {
    const before = await Promise.all([generatedTokens(a), generatedTokens(b)]);
    const results = await Promise.all(Array.from({ length: 24 }, (_, i) => generateDirect(i)));
    for (const r of results) {
      expect(r).not.toBeInstanceOf(MeshError);
      expect((r as GenerateFrame[]).at(-1)?.type).toBe('end');
    }
    const after = await Promise.all([generatedTokens(a), generatedTokens(b)]);
    const served = [after[0] - before[0], after[1] - before[1]];
    // 24 × 8 tokens in all; each replica took a share (all on one: p = 2 × 2^-24).
    expect(served[0] + served[1]).toBe(24 * 8);
    expect(served[0]).toBeGreaterThan(0);
    expect(served[1]).toBeGreaterThan(0);
  });

  it('a full replica answers overloaded; the gateway retries on the other, so every client is served', async () => {
    await stop(b.proc);
    full = await startPolicy('policy-full', { FLYWHEEL_MAX_WAITING: '0', FLYWHEEL_MAX_SEQS: '1' });
    const gatewayPort = await freePort();
    const gateway = run(process.execPath, [serviceEntry('gateway')], {
      NATS_URL: nats.url,
      FLYWHEEL_GATEWAY_PORT: String(gatewayPort),
      FLYWHEEL_API_KEYS: KEY,
      FLYWHEEL_STATE_DIR: stateDir,
      FLYWHEEL_LOG_LEVEL: 'warn',
      FLYWHEEL_MODERATION_TIMEOUT_MS: '500',
      FLYWHEEL_RATE_LIMIT_RPM: '0',
    });
    started.push(gateway);
    gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
    await waitFor(
      async () => {
        if (gateway.child.exitCode !== null) throw new Error(`gateway exited: ${gateway.output().slice(-1000)}`);
        const res = await fetch(`${gatewayUrl}/v1/models`, { headers: { authorization: `Bearer ${KEY}` }, signal: AbortSignal.timeout(3000) });
        return res.status === 200 ? true : undefined;
      },
      90_000,
      'gateway answering /v1/models',
    );

    // Without retries the full replica's refusals reach the caller: it is in the group and refuses.
    const direct = await Promise.all(Array.from({ length: 16 }, (_, i) => generateDirect(100 + i)));
    const refused = direct.filter((r): r is MeshError => r instanceof MeshError);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect(r.code).toBe('overloaded');

    // Through the gateway policy-a serves them (one at a time, so it never queues past its bound). A request
    // misses policy-a on every try with p = 2^-(OVERLOADED_RETRIES + 1); such a miss is a clean 429.
    const fullBefore = await generatedTokens(full);
    const answers = [];
    for (let i = 0; i < 16; i++) answers.push(await complete(gatewayUrl));
    const served = answers.filter((r) => r.status === 200).length;
    expect(served).toBeGreaterThanOrEqual(15);
    for (const r of answers.filter((x) => x.status !== 200)) expect({ status: r.status, code: r.body.error?.code, retryAfter: r.retryAfter !== null }).toEqual({ status: 429, code: 'overloaded', retryAfter: true });
    expect(await generatedTokens(full)).toBe(fullBefore);
  });

  it('with only the full replica left the gateway answers 429 + Retry-After promptly', async () => {
    await stop(a.proc);
    const t0 = performance.now();
    const res = await complete(gatewayUrl);
    const ms = performance.now() - t0;
    expect(res.status).toBe(429);
    expect(res.body.error?.code).toBe('overloaded');
    expect(Number(res.retryAfter)).toBeGreaterThan(0);
    // Bounded retries with millisecond jitter: far below FLYWHEEL_GENERATE_TIMEOUT_MS (60 s).
    expect(ms).toBeLessThan(5_000);
  });
});
