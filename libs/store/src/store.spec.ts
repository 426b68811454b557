/**
 * The store on both of its databases: the real Postgres of this machine (a throwaway database per run)
 * and the embedded Postgres (PGlite behind the wire protocol) in a temp folder. Migrations apply once and re-apply as a no-op; writes are
 * idempotent; feedback that arrives before its completion is adopted when the completion lands, also
 * when both race on separate connections.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { Client, Pool } from 'pg';
import { newTimeOrderedId } from '@flywheel/contracts';
import { completionRecord, createThrowawayDatabase, feedbackEvent, type ThrowawayDatabase } from './store.testing';
import { migrateStore, openStore, type Store, type StoreTarget } from './store.open';
import { startLockedEmbeddedPostgres, type EmbeddedPostgres } from './embedded-postgres';
import { STORE_MIGRATIONS } from './store.migrations';
import { writeCompletion, writeFeedback } from './record.writes';
import { findCompletionRef, listFeedbackOfCompletion } from './feedback.reads';

jest.setTimeout(60_000);

const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';


const cmplId = () => `chatcmpl-${newTimeOrderedId()}`;

describe.each([
  ['postgres', true],
  ['embedded Postgres', false],
] as const)('store on %s', (kind, isPostgres) => {
  let throwaway: ThrowawayDatabase | null = null;
  let dataDir: string | null = null;
  let embedded: EmbeddedPostgres | null = null;
  let target: StoreTarget;
  let store: Store;

  beforeAll(async () => {
    if (isPostgres) {
      throwaway = await createThrowawayDatabase(ADMIN_URL);
      target = { url: throwaway.url };
    } else {
      dataDir = path.join(mkdtempSync(path.join(tmpdir(), 'flywheel-store-')), 'store');
      embedded = await startLockedEmbeddedPostgres({ dataDir });
      target = { url: embedded.url };
    }
    store = await openStore(target);
  });

  afterAll(async () => {
    await store?.close();
    await throwaway?.drop();
    await embedded?.stop();
    if (dataDir) rmSync(path.dirname(dataDir), { recursive: true, force: true });
  });

  it('applies every migration once; migrating again and reopening change nothing', async () => {
    const applied = await sql<{ name: string }>`select name from kysely_migration order by name`.execute(store.db);
    expect(applied.rows.map((r) => r.name)).toEqual(Object.keys(STORE_MIGRATIONS).sort());
    const again = await migrateStore(store.db);
    expect(again.error).toBeUndefined();
    expect(again.results).toEqual([]);
    // A second replica (or service) booting against the same database.
    const second = await openStore(target);
    await second.close();
    const tables = await sql<{ table_name: string }>`
      select table_name from information_schema.tables where table_schema = 'public' order by table_name`.execute(store.db);
    expect(tables.rows.map((r) => r.table_name)).toEqual(
      expect.arrayContaining(['completions', 'dead_letters', 'exports', 'feedback', 'feedback_orphans', 'model_versions', 'reviews', 'training_runs']),
    );
    const trgm = await sql<{ similarity: number }>`select similarity('dragon', 'dragons') as similarity`.execute(store.db);
    expect(trgm.rows[0]?.similarity).toBeGreaterThan(0.5);
  });

  it('stores a completion record once however often it is delivered', async () => {
    const record = completionRecord(cmplId());
    expect(await writeCompletion(store.db, record)).toBe('inserted');
    expect(await writeCompletion(store.db, record)).toBe('duplicate');
    const rows = await store.db.selectFrom('completions').selectAll().where('id', '=', record.id).execute();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ outcome: 'completed', policy_version: 'base', prompt_tokens: 5, review_status: 'pending', flagged: false });
    expect(rows[0]?.choices).toEqual(record.choices);
    expect(rows[0]?.request).toEqual(record.request);
    expect(rows[0]?.search_text).toContain('dragon slept');
    expect(await findCompletionRef(store.db, record.id)).toEqual({ id: record.id, keyId: record.keyId, policyVersion: 'base', choiceCount: 2, promptCount: 1 });
    expect(await findCompletionRef(store.db, cmplId())).toBeNull();
  });

  it('parks feedback that arrives before its completion and adopts it when the completion lands', async () => {
    const record = completionRecord(cmplId(), { policyVersion: 'v7' });
    const early = feedbackEvent(record.id, { kind: 'flag', value: 'incorrect', comment: 'made up' });
    expect(await writeFeedback(store.db, early)).toBe('orphaned');
    expect(await writeFeedback(store.db, early)).toBe('duplicate');
    const waiting = await listFeedbackOfCompletion(store.db, record.id, early.keyId, 10);
    expect(waiting.map((f) => [f.id, f.attached])).toEqual([[early.id, false]]);

    expect(await writeCompletion(store.db, record)).toBe('inserted');
    const orphans = await store.db.selectFrom('feedback_orphans').select('id').where('completion_id', '=', record.id).execute();
    expect(orphans).toEqual([]);
    const late = feedbackEvent(record.id, { kind: 'rating', value: 4 });
    expect(await writeFeedback(store.db, late)).toBe('inserted');
    expect(await writeFeedback(store.db, early)).toBe('duplicate');

    const listed = await listFeedbackOfCompletion(store.db, record.id, early.keyId, 10);
    expect(listed.map((f) => [f.id, f.kind, f.value, f.attached])).toEqual([
      [early.id, 'flag', 'incorrect', true],
      [late.id, 'rating', 4, true],
    ]);
    const stored = await store.db.selectFrom('feedback').select(['policy_version', 'search_text']).where('id', '=', early.id).executeTakeFirstOrThrow();
    expect(stored).toEqual({ policy_version: 'v7', search_text: 'made up\nincorrect' });
    const completion = await store.db.selectFrom('completions').select('flagged').where('id', '=', record.id).executeTakeFirstOrThrow();
    expect(completion.flagged).toBe(true);
    // Another key sees none of it.
    expect(await listFeedbackOfCompletion(store.db, record.id, 'key_bbbbbbbbbbbb', 10)).toEqual([]);
  });

  it('keeps one feedback per (API key, idempotency key) even under a different id', async () => {
    const record = completionRecord(cmplId());
    await writeCompletion(store.db, record);
    const first = feedbackEvent(record.id, { idempotencyKey: 'retry-1' });
    expect(await writeFeedback(store.db, first)).toBe('inserted');
    expect(await writeFeedback(store.db, { ...first, id: `fb-${newTimeOrderedId()}` })).toBe('duplicate');
    expect(await writeFeedback(store.db, { ...first, id: `fb-${newTimeOrderedId()}`, keyId: 'key_bbbbbbbbbbbb' })).toBe('inserted');
  });

  it('strands no feedback when it races its completion', async () => {
    const pairs = Array.from({ length: 40 }, () => {
      const record = completionRecord(cmplId());
      return { record, event: feedbackEvent(record.id) };
    });
    await Promise.all(pairs.flatMap(({ record, event }) => [writeFeedback(store.db, event), writeCompletion(store.db, record)]));
    const ids = pairs.map((p) => p.event.id);
    const landed = await store.db.selectFrom('feedback').select('id').where('id', 'in', ids).execute();
    expect(landed).toHaveLength(pairs.length);
    const parked = await store.db.selectFrom('feedback_orphans').select('id').where('id', 'in', ids).execute();
    expect(parked).toEqual([]);
  });

  it('finds completions by text through the trigram index', async () => {
    const record = completionRecord(cmplId(), {
      choices: [{ index: 0, promptIndex: 0, text: 'A zebra named Quintessa', finishReason: 'stop', tokenIds: [1], logprobs: null }],
    });
    await writeCompletion(store.db, record);
    const hits = await store.db.selectFrom('completions').select('id').where('search_text', 'ilike', '%quintess%').execute();
    expect(hits.map((h) => h.id)).toEqual([record.id]);
  });

  it('keeps many connections apart: statements of different shapes and transactions never mix', async () => {
    // The embedded server runs every connection on one backend: a Parse of one connection landing between
    // another's Parse and Bind would answer "bind message supplies 1 parameters, but prepared statement requires 2".
    const pool = new Pool({ connectionString: target.url, max: 8 });
    try {
      const table = `acct_${Math.random().toString(36).slice(2, 8)}`;
      await pool.query(`create table ${table} (id int primary key, bal int)`);
      await pool.query(`insert into ${table} select g, 100 from generate_series(1, 10) g`);
      const work = Array.from({ length: 600 }, async (_, i) => {
        if (i % 3 === 0) return (await pool.query('select $1::int as a', [i])).rows[0].a === i;
        if (i % 3 === 1) return (await pool.query('select $1::int + $2::int as a', [i, 1])).rows[0].a === i + 1;
        const c = await pool.connect();
        try {
          await c.query('begin');
          await c.query(`update ${table} set bal = bal - 1 where id = $1`, [1 + (i % 10)]);
          await c.query(`update ${table} set bal = bal + 1 where id = $1`, [1 + ((i + 3) % 10)]);
          await c.query(i % 7 === 0 ? 'rollback' : 'commit');
          return true;
        } finally {
          c.release();
        }
      });
      expect((await Promise.all(work)).every(Boolean)).toBe(true);
      expect((await pool.query(`select sum(bal)::int as s from ${table}`)).rows[0].s).toBe(1000);
      await pool.query(`drop table ${table}`);
    } finally {
      await pool.end();
    }
  });

  it('rolls back a transaction whose connection dies, and serves the others meanwhile', async () => {
    const client = new Client({ connectionString: target.url });
    await client.connect();
    client.on('error', () => undefined);
    const record = completionRecord(cmplId());
    await client.query('begin');
    await client.query('insert into dead_letters (id, stream, subject, payload, error) values ($1, $2, $3, $4, $5)', [record.id, 'S', 's', '{}', 'e']);
    await client.query('select 1');
    (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
    const other = await writeCompletion(store.db, record);
    expect(other).toBe('inserted');
    const left = await sql<{ n: number }>`select count(*)::int as n from dead_letters where id = ${record.id}`.execute(store.db);
    expect(left.rows[0]?.n).toBe(0);
  });

  if (!isPostgres) {
    it('refuses a second server on the same folder while the first holds it', async () => {
      await expect(startLockedEmbeddedPostgres({ dataDir: dataDir! })).rejects.toThrow(/is in use by process/);
    });

    it('keeps its data in the folder across a restart, also after a kill -9, on the same URL', async () => {
      const record = completionRecord(cmplId());
      await writeCompletion(store.db, record);
      await store.close();
      await embedded!.stop();
      embedded = await startLockedEmbeddedPostgres({ dataDir: dataDir! });
      store = await openStore({ url: embedded.url });
      expect(await findCompletionRef(store.db, record.id)).not.toBeNull();

      // A crash: the pool stays, the server comes back on its port, nothing committed is gone.
      const crashed = completionRecord(cmplId());
      await writeCompletion(store.db, crashed);
      embedded.child.kill('SIGKILL');
      await embedded.exited;
      await embedded.stop();
      const port = embedded.port;
      embedded = await startLockedEmbeddedPostgres({ dataDir: dataDir!, port });
      expect(embedded.port).toBe(port);
      expect(await findCompletionRef(store.db, crashed.id)).not.toBeNull();
    });
  }
});
