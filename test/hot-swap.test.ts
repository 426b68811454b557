/**
 * Promotion, hot swap and rollback through the real pieces: the `flywheel models` CLI (dist) against a private
 * nats-server with JetStream, and the compiled policy service (`npm run build:ts` first). v1 is stories260K, v2
 * the same weights with token 432's (tied) embedding row negated, so greedy output differs from the first token.
 * A gateway on a throwaway Postgres database serves the admin API's model routes and records the lineage.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { connect, type NatsConnection } from 'nats';
import { generateFrameSchema, policyInfoSchema, SUBJECTS, tokenDeltasOf, type GenerateFrame, type GenerateRequestInput } from '@flywheel/contracts';
import { ensureJetStream, entryFor, fetchCheckpoint, findPublished, MeshClient, promote, putCheckpoint, readActive } from '@flywheel/mesh';
import { createNativeEngine, loadCheckpoint, writeHfCheckpoint } from '@flywheel/model';
import { openStore, type Store } from '@flywheel/store';
import { createThrowawayDatabase, type ThrowawayDatabase } from '@flywheel/store/testing';
import { startPrivateNats, type PrivateNats } from './gateway.support';
import { freePort, repoRoot, run, serviceEntry, stop, waitFor, type Running } from './support/processes';

jest.setTimeout(90_000);

const V1_DIR = path.join(repoRoot, 'models', 'stories260K');
const PROMPT = 'Once upon a time';
const CHANGED_TOKEN = 432;
const LONG_TOKENS = 500;
/** 4 streams × 4 greedy choices: a batch of 16 keeps the streams busy well past the swap. */
const LONG_CHOICES = 4;
const execFileP = promisify(execFile);
const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const ADMIN_KEY = 'sk-flywheel-hot-swap-admin';

async function cli(natsUrl: string, ...args: string[]): Promise<{ code: number; out: unknown; stderr: string }> {
  try {
    const r = await execFileP(process.execPath, [path.join(repoRoot, 'dist', 'scripts', 'cli', 'cli.main.js'), 'models', ...args, '--nats', natsUrl], { timeout: 20_000 });
    return { code: 0, out: JSON.parse(r.stdout), stderr: r.stderr };
  } catch (err) {
    const e = err as { code?: number; stderr?: string };
    return { code: e.code ?? -1, out: null, stderr: e.stderr ?? '' };
  }
}

/** Greedy continuation of PROMPT by a local engine: what the served version must answer. */
/** Long streams ban the end-of-story ids (1, 2), so they run all LONG_TOKENS and the swap lands mid-stream. */
const NO_EOS: Record<string, number> = { '1': -100, '2': -100 };

async function greedyIds(dir: string, maxTokens: number, logitBias: Record<string, number> = {}): Promise<number[]> {
  const ck = await loadCheckpoint(dir);
  const { engine, close } = createNativeEngine(ck, { numBlocks: 40, dtype: 'f32', threads: 1, maxModelLen: ck.spec.maxPositionEmbeddings });
  const ids: number[] = [];
  try {
    const events = engine.generate({
      requestId: 'expected',
      promptTokenIds: ck.tokenizer.encode(PROMPT, { addSpecialTokens: true }),
      maxTokens,
      n: 1,
      stop: [],
      stopTokenIds: [],
      sampling: { temperature: 0, topP: 1, topK: 0, seed: null, presencePenalty: 0, frequencyPenalty: 0, logitBias: new Map(Object.entries(logitBias).map(([k, v]) => [Number(k), v])), logprobs: false, topLogprobs: 0 },
    });
    for await (const ev of events) ids.push(...ev.tokenIds);
  } finally {
    await close();
  }
  return ids;
}

describe('model versions: publish, promote, hot swap, rollback', () => {
  let nats: PrivateNats;
  let nc: NatsConnection;
  let mesh: MeshClient;
  let work: string;
  let v2Dir: string;
  let policy: Running | undefined;
  let gateway: Running | undefined;
  let gatewayUrl: string;
  let database: ThrowawayDatabase;
  let reader: Store;
  let port: number;
  const expected: { v1: number[]; v2: number[]; v1Long: number[] } = { v1: [], v2: [], v1Long: [] };

  const request = (requestId: string, maxTokens: number, logitBias: Record<string, number> = {}, n = 1): GenerateRequestInput => ({
    requestId,
    input: { kind: 'text', text: PROMPT },
    sampling: { temperature: 0, maxTokens, logitBias, n },
  });
  const generate = async (req: GenerateRequestInput): Promise<GenerateFrame[]> => {
    const frames: GenerateFrame[] = [];
    for await (const f of mesh.stream(SUBJECTS.policy.generate, req, generateFrameSchema, { firstReplyTimeoutMs: 10_000, idleTimeoutMs: 10_000 })) frames.push(f);
    return frames;
  };
  const ids = (frames: GenerateFrame[], choice = 0) => tokenDeltasOf(frames).flatMap((d) => (d.choice === choice ? d.tokenIds : []));
  const served = (frames: GenerateFrame[]) => (frames[0]?.type === 'start' ? frames[0].policyVersion : null);
  const info = () => mesh.request(SUBJECTS.policy.info, {}, policyInfoSchema, { timeoutMs: 3000 });
  const waitForVersion = (version: string) =>
    waitFor(async () => ((await info().catch(() => null))?.policyVersion === version ? true : undefined), 20_000, `policy serving ${version}`);
  const runningNow = async () => Number((await metrics()).match(/^flywheel_num_requests_running\{[^}]*\} (\d+)$/m)?.[1]);
  const metrics = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const startPolicy = async () => {
    port = await freePort();
    const p = run(process.execPath, [serviceEntry('policy')], {
      NATS_URL: nats.url,
      FLYWHEEL_POLICY_PORT: String(port),
      FLYWHEEL_STATE_DIR: path.join(work, 'state'),
      FLYWHEEL_LOG_LEVEL: 'warn',
      FLYWHEEL_THREADS: '1',
    });
    await waitFor(async () => ((await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null))?.status === 200 ? true : undefined), 30_000, 'policy ready');
    return p;
  };

  beforeAll(async () => {
    work = mkdtempSync(path.join(tmpdir(), 'flywheel-hot-swap-'));
    nats = await startPrivateNats();
    nc = await connect({ servers: nats.url });
    mesh = new MeshClient(nc);
    await ensureJetStream(nc);
    database = await createThrowawayDatabase(ADMIN_URL);
    const gatewayPort = await freePort();
    gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
    gateway = run(process.execPath, [serviceEntry('gateway')], {
      NATS_URL: nats.url,
      DATABASE_URL: database.url,
      FLYWHEEL_GATEWAY_PORT: String(gatewayPort),
      FLYWHEEL_API_KEYS: 'sk-flywheel-hot-swap-user',
      FLYWHEEL_ADMIN_KEYS: ADMIN_KEY,
      FLYWHEEL_STATE_DIR: path.join(work, 'gateway-state'),
      FLYWHEEL_LOG_LEVEL: 'warn',
    });
    reader = await openStore({ url: database.url });

    const v1 = await loadCheckpoint(V1_DIR);
    const weights = new Map(v1.weights);
    const embed = Float32Array.from(weights.get('model.embed_tokens.weight')!);
    const row = embed.subarray(CHANGED_TOKEN * v1.spec.hiddenSize, (CHANGED_TOKEN + 1) * v1.spec.hiddenSize);
    for (let i = 0; i < row.length; i++) row[i] = -row[i]!;
    weights.set('model.embed_tokens.weight', embed);
    v2Dir = path.join(work, 'v2');
    const baseConfig = JSON.parse(readFileSync(path.join(V1_DIR, 'config.json'), 'utf8')) as Record<string, unknown>;
    await writeHfCheckpoint(v2Dir, { spec: v1.spec, weights, baseConfig, tokenizerDir: V1_DIR });
    expected.v1 = await greedyIds(V1_DIR, 32);
    expected.v2 = await greedyIds(v2Dir, 32);
    expected.v1Long = await greedyIds(V1_DIR, LONG_TOKENS, NO_EOS);
  });

  afterAll(async () => {
    await stop(policy);
    await stop(gateway);
    await reader?.close();
    await database?.drop();
    await nc?.drain();
    await nats?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('v2 really answers differently (the test would prove nothing otherwise)', () => {
    expect(expected.v1[0]).toBe(CHANGED_TOKEN);
    expect(expected.v2[0]).not.toBe(CHANGED_TOKEN);
    expect(expected.v1Long.slice(0, 32)).toEqual(expected.v1);
    expect(expected.v1Long).toHaveLength(LONG_TOKENS);
  });

  it('publishes checkpoints; a version is immutable and the fetched copy is verified', async () => {
    const p1 = await cli(nats.url, 'publish', '--dir', V1_DIR, '--version', 'v1');
    expect(p1).toMatchObject({ code: 0, out: { version: 'v1', role: 'policy', parent: null, checkpoint: { object: 'v1' } } });
    const p2 = await cli(nats.url, 'publish', '--dir', v2Dir, '--version', 'v2', '--parent', 'v1', '--run-id', 'run-7', '--export', 'exp-1');
    expect(p2).toMatchObject({ code: 0, out: { version: 'v2', parent: 'v1', runId: 'run-7', exports: ['exp-1'] } });
    const again = await cli(nats.url, 'publish', '--dir', v2Dir, '--version', 'v2');
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/v2 is already published/);

    const ref = (p2.out as { checkpoint: { object: string; sha256: string; bytes: number } }).checkpoint;
    const dir = await fetchCheckpoint(nc, ref, path.join(work, 'cache'));
    expect(readFileSync(path.join(dir, 'model.safetensors')).equals(readFileSync(path.join(v2Dir, 'model.safetensors')))).toBe(true);
    await expect(fetchCheckpoint(nc, { ...ref, sha256: '0'.repeat(64) }, path.join(work, 'cache'))).rejects.toThrow(/sha256/);
    await expect(putCheckpoint(nc, { version: 'bad', role: 'policy', dir: work })).rejects.toThrow(/no config.json/);

    const unknown = await cli(nats.url, 'promote', '--version', 'v9');
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/v9 is not published/);
    expect((await cli(nats.url, 'rollback')).stderr).toMatch(/no earlier policy version/);
  });

  it('serves FLYWHEEL_MODEL as the configured version until a promotion, then v1', async () => {
    policy = await startPolicy();
    expect((await info()).policyVersion).toBe('base');
    const promoted = await cli(nats.url, 'promote', '--version', 'v1', '--reason', 'first');
    expect(promoted).toMatchObject({ code: 0, out: { version: 'v1', reason: 'first', action: 'promote' } });
    await waitForVersion('v1');
    const frames = await generate(request('after-v1', 32));
    expect(served(frames)).toBe('v1');
    expect(ids(frames)).toEqual(expected.v1);
  });

  it('swaps to v2 mid-stream: streams in flight finish on v1, new requests get v2', async () => {
    const long = [0, 1, 2, 3].map(async (i) => {
      const frames: GenerateFrame[] = [];
      for await (const f of mesh.stream(SUBJECTS.policy.generate, request(`long-${i}`, LONG_TOKENS, NO_EOS, LONG_CHOICES), generateFrameSchema, { firstReplyTimeoutMs: 10_000, idleTimeoutMs: 10_000 })) {
        frames.push(f);
      }
      return { frames, endedAt: Date.now() };
    });
    // Promote once the long streams run, with the library's one KV write (the CLI's node start-up would
    // cost a second of their lifetime), and watch the replica switch.
    await waitFor(async () => ((await runningNow()) === 4 * LONG_CHOICES ? true : undefined), 10_000, 'long streams running');
    await promote(nc, 'policy', entryFor((await findPublished(nc, 'v2'))!, 'test', 'mid-stream'));
    await waitFor(async () => ((await info()).policyVersion === 'v2' ? true : undefined), 10_000, 'policy serving v2');
    const swappedAt = Date.now();
    const fresh = await generate(request('after-v2', 32));
    expect(served(fresh)).toBe('v2');
    expect(ids(fresh)).toEqual(expected.v2);

    for (const { frames, endedAt } of await Promise.all(long)) {
      expect(endedAt).toBeGreaterThan(swappedAt);
      expect(served(frames)).toBe('v1');
      for (let c = 0; c < LONG_CHOICES; c++) expect(ids(frames, c)).toEqual(expected.v1Long);
      expect(tokenDeltasOf(frames).filter((d) => d.finishReason !== undefined)).toHaveLength(LONG_CHOICES);
      expect(frames.at(-1)).toMatchObject({ type: 'end', usage: { completionTokens: LONG_CHOICES * LONG_TOKENS } });
    }
    const text = await metrics();
    expect(text).toMatch(/^flywheel_policy_swaps_total\{outcome="ok"[^}]*\} 2$/m);
    expect(text).toMatch(/^flywheel_policy_active_version\{version="v2"[^}]*\} 1$/m);
    expect(text).not.toMatch(/^flywheel_policy_active_version\{version="v1"/m);
    expect(await readActive(nc, 'policy')).toMatchObject({ version: 'v2', parent: 'v1', runId: 'run-7', exports: ['exp-1'] });
  });

  it('rolls back to v1 with one KV write, and lists versions with their state', async () => {
    const rolled = await cli(nats.url, 'rollback');
    expect(rolled).toMatchObject({ code: 0, out: { version: 'v1', action: 'rollback', reason: 'rollback from v2' } });
    await waitForVersion('v1');
    const frames = await generate(request('after-rollback', 32));
    expect(served(frames)).toBe('v1');
    expect(ids(frames)).toEqual(expected.v1);
    // v1 was the first promotion: nothing is left to roll back to.
    expect((await cli(nats.url, 'rollback')).code).toBe(1);

    const list = await cli(nats.url, 'list');
    expect(list).toMatchObject({
      code: 0,
      out: {
        role: 'policy',
        active: 'v1',
        previous: null,
        versions: [
          { version: 'v1', state: 'active', parent: null },
          { version: 'v2', state: 'candidate', parent: 'v1', runId: 'run-7' },
        ],
      },
    });
  });

  it('admin API: lists, promotes and rolls back behind session + CSRF; the lineage rows follow the mesh', async () => {
    const call = async (method: string, route: string, body?: unknown, headers: Record<string, string> = {}) => {
      const res = await fetch(`${gatewayUrl}${route}`, {
        method,
        headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, headers: res.headers, body: (await res.json().catch(() => null)) as any };
    };
    const login = await waitFor(async () => {
      const r = await call('POST', '/admin/api/session', { key: ADMIN_KEY }).catch(() => null);
      return r?.status === 200 ? r : undefined;
    }, 30_000, 'gateway admin login');
    const session = { cookie: (login.headers.get('set-cookie') ?? '').split(';')[0] ?? '' };
    const csrf = { ...session, 'x-csrf-token': login.body.csrf_token as string };
    const lineage = async () =>
      Object.fromEntries((await reader.db.selectFrom('model_versions').selectAll().execute()).map((r) => [r.id, r]));

    expect((await call('GET', '/admin/api/models')).status).toBe(401);
    const listed = await call('GET', '/admin/api/models', undefined, session);
    expect(listed).toMatchObject({ status: 200, body: { role: 'policy', active: 'v1', versions: [{ version: 'v1', state: 'active' }, { version: 'v2', state: 'candidate' }] } });
    expect((await call('POST', '/admin/api/models/promote', { version: 'v2' }, session)).body.error).toMatchObject({ code: 'csrf_failed' });
    expect((await call('POST', '/admin/api/models/promote', { version: 'v9' }, csrf))).toMatchObject({ status: 404, body: { error: { code: 'not_found' } } });

    const promoted = await call('POST', '/admin/api/models/promote', { version: 'v2', reason: 'looks better' }, csrf);
    expect(promoted).toMatchObject({ status: 200, body: { version: 'v2', reason: 'looks better', promotedBy: expect.stringMatching(/^admin:/) } });
    await waitForVersion('v2');
    const afterPromote = await waitFor(async () => {
      const rows = await lineage();
      return rows.v2?.status === 'active' && rows.v1?.status === 'retired' ? rows : undefined;
    }, 15_000, 'lineage: v2 active, v1 retired');
    expect(afterPromote.v2).toMatchObject({ role: 'policy', parent_id: 'v1', checkpoint: 'v2', metrics: { lineage: { parent: 'v1', runId: 'run-7', exports: ['exp-1'] } } });
    expect(afterPromote.v2!.promoted_at).toBeInstanceOf(Date);

    const rolled = await call('POST', '/admin/api/models/rollback', {}, csrf);
    expect(rolled).toMatchObject({ status: 200, body: { version: 'v1', action: 'rollback' } });
    await waitForVersion('v1');
    await waitFor(async () => {
      const rows = await lineage();
      return rows.v1?.status === 'active' && rows.v2?.status === 'retired' ? true : undefined;
    }, 15_000, 'lineage: v1 active again, v2 retired');
    expect(await call('POST', '/admin/api/models/rollback', {}, csrf)).toMatchObject({ status: 409, body: { error: { code: 'nothing_to_roll_back' } } });
  });

  it('a replica that boots while the KV names a version serves it from the start', async () => {
    await stop(policy);
    policy = await startPolicy();
    expect((await info()).policyVersion).toBe('v1');
    expect(await metrics()).toMatch(/^flywheel_policy_active_version\{version="v1"[^}]*\} 1$/m);
  });

  it('a version whose checkpoint fails verification is not served: the replica keeps v1, nothing fails', async () => {
    const v2 = (await findPublished(nc, 'v2'))!;
    await promote(nc, 'policy', { ...entryFor(v2, 'test', 'tampered'), version: 'v2-bad', checkpoint: { ...v2.checkpoint, sha256: 'f'.repeat(64) } });
    await waitFor(async () => (/^flywheel_policy_swaps_total\{outcome="failed"[^}]*\} 1$/m.test(await metrics()) ? true : undefined), 15_000, 'failed swap counted');
    expect((await info()).policyVersion).toBe('v1');
    const frames = await generate(request('after-bad', 32));
    expect(served(frames)).toBe('v1');
    expect(ids(frames)).toEqual(expected.v1);
  });
});
