/**
 * The data flywheel end to end against real parts: the compiled gateway process on a private
 * JetStream-enabled nats-server, writing to a throwaway database on this machine's Postgres.
 * Completion records are published on JetStream exactly as the gateway's OpenAI API publishes them
 * (subject flywheel.completions.<id>, Nats-Msg-Id = id); feedback goes through HTTP.
 * THE OUTAGE TEST: with the database refusing connections, every feedback POST still gets 200, and once
 * it is back every record lands exactly once.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect, JSONCodec, type NatsConnection } from 'nats';
import { Client } from 'pg';
import { completionRecordSubject, newTimeOrderedId, STREAMS, type CompletionRecord } from '@flywheel/contracts';
import { openStore, type Store } from '@flywheel/store';
import { completionRecord, createThrowawayDatabase, type ThrowawayDatabase } from '@flywheel/store/testing';
import { metricValue, startPrivateNats, type PrivateNats } from './gateway.support';
import { freePort, run, serviceEntry, stop, waitFor, type Running } from './support/processes';

jest.setTimeout(180_000);

const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const KEY = 'sk-flywheel-test-0001';
const OTHER_KEY = 'sk-flywheel-test-0002';
const codec = JSONCodec<CompletionRecord>();

let nats: PrivateNats;
let database: ThrowawayDatabase;
let gateway: Running;
let gatewayUrl: string;
let stateDir: string;
let nc: NatsConnection;
let reader: Store;
/** The gateway's key id for KEY, learned from the first record's feedback (it is sha256-derived). */
let keyId: string;

beforeAll(async () => {
  stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-store-test-'));
  nats = await startPrivateNats();
  database = await createThrowawayDatabase(ADMIN_URL);
  const port = await freePort();
  gatewayUrl = `http://127.0.0.1:${port}`;
  gateway = run(process.execPath, [serviceEntry('gateway')], {
    NATS_URL: nats.url,
    DATABASE_URL: database.url,
    FLYWHEEL_GATEWAY_PORT: String(port),
    FLYWHEEL_API_KEYS: `${KEY},${OTHER_KEY}`,
    FLYWHEEL_RATE_LIMIT_RPM: '0',
    FLYWHEEL_STATE_DIR: stateDir,
    FLYWHEEL_STORE_RETRY_MAX_MS: '1000',
    FLYWHEEL_LOG_LEVEL: 'warn',
  });
  // Ready when the store is open (migrations applied): GET /v1/feedback answers 200.
  await waitFor(
    async () => ((await getFeedback('chatcmpl-none')).status === 200 ? true : undefined),
    60_000,
    'gateway with its store open',
  ).catch((err) => {
    throw new Error(`${String(err)}\n--- gateway ---\n${gateway.output().slice(-3000)}`);
  });
  nc = await connect({ servers: nats.url });
  reader = await openStore({ url: database.url });
  const { createHash } = await import('node:crypto');
  keyId = `key_${createHash('sha256').update(KEY).digest().subarray(0, 6).toString('hex')}`;
});

afterAll(async () => {
  await reader?.close();
  await nc?.drain();
  await stop(gateway);
  await nats?.stop();
  await database?.admin(`ALTER DATABASE ${database.name} ALLOW_CONNECTIONS true`).catch(() => undefined);
  await database?.drop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

/** A record as the gateway would publish it, under this test's key id. */
function record(id: string, over: Partial<CompletionRecord> = {}): CompletionRecord {
  return completionRecord(id, { keyId, requestId: `req_${id}`, gatewayInstanceId: 'gateway-test', ...over });
}

/** What the gateway's CompletionRecords does: publish and wait for JetStream's ack. */
async function publishRecord(r: CompletionRecord): Promise<void> {
  await nc.jetstream().publish(completionRecordSubject(r.id), codec.encode(r), { msgID: r.id });
}

const newCompletionId = () => `chatcmpl-${newTimeOrderedId()}`;

async function postFeedback(body: unknown, key = KEY): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(`${gatewayUrl}/v1/feedback`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

async function getFeedback(completionId: string, key = KEY): Promise<{ status: number; body: any }> {
  const res = await fetch(`${gatewayUrl}/v1/feedback?completion_id=${encodeURIComponent(completionId)}`, {
    headers: { authorization: `Bearer ${key}` },
    signal: AbortSignal.timeout(15_000),
  });
  return { status: res.status, body: await res.json() };
}

async function storedIds(table: 'completions' | 'feedback' | 'feedback_orphans', ids: string[]): Promise<string[]> {
  if (ids.length === 0) return [];
  const rows = await reader.db.selectFrom(table).select('id').where('id', 'in', ids).execute();
  return rows.map((r) => r.id).sort();
}

async function waitForStored(table: 'completions' | 'feedback', ids: string[], timeoutMs = 60_000): Promise<void> {
  await waitFor(async () => ((await storedIds(table, ids)).length === ids.length ? true : undefined), timeoutMs, `${ids.length} rows in ${table}`);
}

describe('store writer and feedback API', () => {
  it('writes completion records and feedback to Postgres, once each', async () => {
    const records = [record(newCompletionId()), record(newCompletionId(), { policyVersion: 'v2' })];
    for (const r of records) await publishRecord(r);
    await publishRecord(records[0]!); // a retried publish: JetStream dedups it by Nats-Msg-Id
    // A message the writer cannot parse is kept in dead_letters and does not stop the ones after it.
    await nc.jetstream().publish(completionRecordSubject('garbage'), new TextEncoder().encode('{"not":"a record"}'));
    const late = record(newCompletionId());
    await publishRecord(late);
    await waitForStored('completions', [...records, late].map((r) => r.id));
    const dead = await reader.db.selectFrom('dead_letters').select(['stream', 'subject']).execute();
    expect(dead).toEqual([{ stream: STREAMS.completions.name, subject: completionRecordSubject('garbage') }]);

    const [first] = records;
    const thumbs = await postFeedback({ completion_id: first!.id, choice_index: 1, kind: 'thumbs', value: 'down', comment: 'the park is off topic' });
    expect(thumbs.status).toBe(200);
    expect(thumbs.body).toMatchObject({ object: 'feedback', completion_id: first!.id, choice_index: 1, kind: 'thumbs', value: 'down', review_status: 'pending' });
    const pref = { completion_id: first!.id, kind: 'preference', value: { chosen: 0, rejected: 1 }, idempotency_key: 'pref-1' };
    const once = await postFeedback(pref);
    const twice = await postFeedback(pref);
    expect([once.status, twice.status]).toEqual([200, 200]);
    expect(twice.body).toEqual(once.body);
    expect(twice.headers.get('idempotent-replayed')).toBe('true');

    await waitForStored('feedback', [thumbs.body.id, once.body.id]);
    const listed = await getFeedback(first!.id);
    expect(listed.status).toBe(200);
    expect(listed.body.data.map((f: any) => f.id).sort()).toEqual([thumbs.body.id, once.body.id].sort());
    expect((await getFeedback(first!.id, OTHER_KEY)).body.data).toEqual([]);
    const row = await reader.db.selectFrom('feedback').selectAll().where('id', '=', once.body.id).executeTakeFirstOrThrow();
    expect(row).toMatchObject({ completion_id: first!.id, kind: 'preference', value: { chosen: 0, rejected: 1 }, key_id: keyId, idempotency_key: 'pref-1', policy_version: 'base' });
  });

  it('answers errors in OpenAI shape: bad body, no key, unknown or foreign completion', async () => {
    const r = record(newCompletionId());
    await publishRecord(r);
    const bad = await postFeedback({ completion_id: r.id, kind: 'rating', value: 9 });
    expect(bad.status).toBe(400);
    expect(bad.body).toEqual({ error: { message: expect.stringContaining("'value'"), type: 'invalid_request_error', param: 'value', code: 'invalid_value' } });
    const noChoice = await postFeedback({ completion_id: r.id, choice_index: 2, kind: 'thumbs', value: 'up' });
    expect(noChoice.body.error).toMatchObject({ param: 'choice_index' });
    const unauthenticated = await fetch(`${gatewayUrl}/v1/feedback`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } });
    expect(unauthenticated.status).toBe(401);
    const unauthenticatedBody: any = await unauthenticated.json();
    expect(unauthenticatedBody.error.type).toBe('authentication_error');
    // A v4-style id carries no time: unknown to JetStream and the store, it does not exist.
    const unknown = await postFeedback({ completion_id: 'chatcmpl-0123456789abcdef0123456789abcdef', kind: 'thumbs', value: 'up' });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ type: 'invalid_request_error', param: 'completion_id', code: 'completion_not_found' });
    expect((await postFeedback({ completion_id: r.id, kind: 'thumbs', value: 'up' }, OTHER_KEY)).status).toBe(404);
  });

  it('accepts feedback on a completion still in flight and attaches it when the record lands', async () => {
    const r = record(newCompletionId());
    const early = await postFeedback({ completion_id: r.id, kind: 'flag', value: 'incorrect' });
    expect(early.status).toBe(200);
    await waitFor(async () => ((await storedIds('feedback_orphans', [early.body.id])).length === 1 ? true : undefined), 30_000, 'orphaned feedback');
    expect((await getFeedback(r.id)).body.data.map((f: any) => f.id)).toEqual([early.body.id]);
    await publishRecord(r);
    await waitForStored('feedback', [early.body.id]);
    expect(await storedIds('feedback_orphans', [early.body.id])).toEqual([]);
    const completion = await reader.db.selectFrom('completions').select('flagged').where('id', '=', r.id).executeTakeFirstOrThrow();
    expect(completion.flagged).toBe(true);
  });

  it('loses nothing while the database is unreachable: every POST gets 200, every record lands once', async () => {
    const records = Array.from({ length: 12 }, () => record(newCompletionId()));
    for (const r of records) await publishRecord(r);
    await waitForStored('completions', records.map((r) => r.id));

    // The outage: Postgres refuses every new connection to this database and drops the open ones.
    await reader.close();
    await database.admin(`ALTER DATABASE ${database.name} ALLOW_CONNECTIONS false`);
    await database.admin(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${database.name}' AND pid <> pg_backend_pid()`);
    const probe = new Client({ connectionString: database.url, connectionTimeoutMillis: 3_000 });
    await expect(probe.connect()).rejects.toThrow(/not currently accepting connections/);
    await probe.end().catch(() => undefined);

    const during = Array.from({ length: 10 }, () => record(newCompletionId()));
    for (const r of during) await publishRecord(r);
    const accepted: string[] = [];
    const statuses: number[] = [];
    const targets = [...records, ...during];
    for (let i = 0; i < 30; i++) {
      const target = targets[i % targets.length]!;
      const body =
        i % 3 === 0
          ? { completion_id: target.id, kind: 'rating', value: (i % 5) + 1 }
          : i % 3 === 1
            ? { completion_id: target.id, choice_index: 0, kind: 'correction', value: `A better story number ${i}.` }
            : { completion_id: target.id, kind: 'thumbs', value: 'up', idempotency_key: `outage-${i}` };
      const res = await postFeedback(body);
      statuses.push(res.status);
      if (res.status === 200) accepted.push(res.body.id);
      if (i % 3 === 2) {
        // The client retries an idempotent POST: same answer, nothing new.
        const retry = await postFeedback(body);
        statuses.push(retry.status);
        expect(retry.body.id).toBe(res.body.id);
      }
    }
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(new Set(accepted).size).toBe(30);
    // The store is really gone for the gateway: reads say so in OpenAI's shape.
    const read = await getFeedback(records[0]!.id);
    expect(read.status).toBe(503);
    expect(read.body.error).toMatchObject({ type: 'server_error', code: 'store_unavailable' });
    // And the writer is retrying, not dropping.
    await waitFor(
      async () => {
        const text = await (await fetch(`${gatewayUrl}/metrics`)).text();
        return (metricValue(text, 'flywheel_store_writes_total', { stream: STREAMS.feedback.name, outcome: 'error' }) ?? 0) >= 3 ? true : undefined;
      },
      30_000,
      'writer retrying feedback writes',
    );
    await new Promise((r) => setTimeout(r, 3_000));

    await database.admin(`ALTER DATABASE ${database.name} ALLOW_CONNECTIONS true`);
    reader = await openStore({ url: database.url });
    await waitForStored('completions', during.map((r) => r.id));
    await waitForStored('feedback', accepted);

    // Exactly once: every accepted id, nothing else, and nothing left for the consumers to deliver.
    expect(await storedIds('feedback', accepted)).toEqual([...accepted].sort());
    const targetIds = targets.map((t) => t.id);
    const all = await reader.db.selectFrom('feedback').select('id').where('completion_id', 'in', targetIds).execute();
    expect(all.map((r) => r.id).sort()).toEqual([...accepted].sort());
    const completions = await reader.db.selectFrom('completions').select('id').where('id', 'in', targetIds).execute();
    expect(completions.map((r) => r.id).sort()).toEqual([...targetIds].sort());
    expect(await storedIds('feedback_orphans', accepted)).toEqual([]);
    const jsm = await nc.jetstreamManager();
    await waitFor(
      async () => {
        const [c, f] = await Promise.all([jsm.consumers.info(STREAMS.completions.name, 'store-writer'), jsm.consumers.info(STREAMS.feedback.name, 'store-writer')]);
        return c.num_pending + c.num_ack_pending + f.num_pending + f.num_ack_pending === 0 ? true : undefined;
      },
      30_000,
      'store-writer consumers drained',
    );
  });
});
