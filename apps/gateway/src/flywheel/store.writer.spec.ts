/**
 * The store writer's per-message decision against a real Postgres (throwaway database): a record whose
 * content the database refuses (a NUL character: Postgres text and jsonb cannot hold U+0000) is
 * dead-lettered verbatim and acked, instead of being nak'd forever, which paused the stream's loop at the
 * backoff's pace on every redelivery (found by test/reliability). Ordinary records are still written.
 */
import { sql } from 'kysely';
import { STREAMS } from '@flywheel/contracts';
import { openStore, type Store } from '@flywheel/store';
import { completionRecord, createThrowawayDatabase, feedbackEvent, type ThrowawayDatabase } from '@flywheel/store/testing';
import { handleRecord } from './store.writer';

jest.setTimeout(60_000);

const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const bytes = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

describe('handleRecord on postgres', () => {
  let throwaway: ThrowawayDatabase;
  let store: Store;

  beforeAll(async () => {
    throwaway = await createThrowawayDatabase(ADMIN_URL);
    store = await openStore({ url: throwaway.url });
  });

  afterAll(async () => {
    await store?.close();
    await throwaway?.drop();
  });

  it('dead-letters a completion with a NUL in its prompt instead of retrying it forever', async () => {
    const id = 'chatcmpl-nul0000000000000000000001';
    const rec = completionRecord(id, { messages: [{ role: 'user', content: 'a\u0000b' }], request: { model: 'stories260K', messages: [{ role: 'user', content: 'a\u0000b' }] } });
    const result = await handleRecord({ get: () => store }, STREAMS.completions.name, { data: bytes(rec), subject: `flywheel.completions.${id}`, sequence: 7, redeliveryCount: 1 }, 1000);
    expect(result).toEqual({ ack: true, outcome: 'dead_letter' });
    const letters = await sql<{ payload: string; error: string }>`select payload, error from dead_letters where id = ${`${STREAMS.completions.name}:7`}`.execute(store.db);
    expect(letters.rows).toHaveLength(1);
    expect(letters.rows[0].payload).toContain(id);
    expect(letters.rows[0].error).toMatch(/unstorable content/);
  });

  it('dead-letters feedback with a NUL in its comment, and still writes ordinary records', async () => {
    const cid = 'chatcmpl-ok00000000000000000000001';
    const ok = await handleRecord({ get: () => store }, STREAMS.completions.name, { data: bytes(completionRecord(cid)), subject: `flywheel.completions.${cid}`, sequence: 8, redeliveryCount: 1 }, 1000);
    expect(ok.ack).toBe(true);
    expect(ok.ack && ok.outcome).not.toBe('dead_letter');
    const fb = feedbackEvent(cid, { comment: 'x\u0000y' });
    const bad = await handleRecord({ get: () => store }, STREAMS.feedback.name, { data: bytes(fb), subject: `flywheel.feedback.${fb.id}`, sequence: 9, redeliveryCount: 1 }, 1000);
    expect(bad).toEqual({ ack: true, outcome: 'dead_letter' });
  });

  it('still naks (retries) when the database is down', async () => {
    const down = { get: (): Store => { throw new Error('the store is not open'); } };
    const r = await handleRecord(down, STREAMS.completions.name, { data: bytes(completionRecord('chatcmpl-x')), subject: 's', sequence: 10, redeliveryCount: 3 }, 1000);
    expect(r.ack).toBe(false);
  });
});
