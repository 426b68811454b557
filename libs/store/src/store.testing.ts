/**
 * For tests against a real Postgres: a throwaway database `flywheel_test_<random>` created through an
 * admin connection and dropped (with its connections) afterwards, a store opened on one (or on an embedded Postgres) for
 * a spec's lifetime, and valid records to write into it.
 * Imported as '@flywheel/store/testing' (specs, test/, the demo scripts), never through the library's barrel;
 * not used by any service.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { newTimeOrderedId, type CompletionRecord, type FeedbackEvent } from '@flywheel/contracts';
import { startLockedEmbeddedPostgres, type EmbeddedPostgres } from './embedded-postgres';
import { openStore, type Store } from './store.open';

export interface ThrowawayDatabase {
  name: string;
  /** The admin URL with its database replaced by this one. */
  url: string;
  /** Runs one statement on the admin connection's database (e.g. ALTER DATABASE … ALLOW_CONNECTIONS). */
  admin(statement: string): Promise<void>;
  drop(): Promise<void>;
}

async function onAdmin(adminUrl: string, statement: string): Promise<void> {
  const client = new Client({ connectionString: adminUrl, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

export async function createThrowawayDatabase(adminUrl: string): Promise<ThrowawayDatabase> {
  const name = `flywheel_test_${randomBytes(6).toString('hex')}`;
  await onAdmin(adminUrl, `CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    admin: (statement) => onAdmin(adminUrl, statement),
    drop: () => onAdmin(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`),
  };
}

/** A store test's database: the machine's Postgres (a throwaway database) or an embedded Postgres in a temporary folder. */
export type TestStoreKind = 'postgres' | 'embedded Postgres';

/**
 * Registers (jest) a beforeAll that opens a store on a fresh database of `kind` and hands it to `set`, and an
 * afterAll that closes it and removes the database; for the `describe.each` over both kinds that store specs share.
 */
export function onTestStore(kind: TestStoreKind, adminUrl: string, tmpPrefix: string, set: (store: Store) => void): void {
  let throwaway: ThrowawayDatabase | null = null;
  let dataDir: string | null = null;
  let embedded: EmbeddedPostgres | null = null;
  let store: Store | null = null;
  beforeAll(async () => {
    if (kind === 'postgres') {
      throwaway = await createThrowawayDatabase(adminUrl);
      store = await openStore({ url: throwaway.url });
    } else {
      dataDir = mkdtempSync(path.join(tmpdir(), tmpPrefix));
      embedded = await startLockedEmbeddedPostgres({ dataDir: path.join(dataDir, 'store') });
      store = await openStore({ url: embedded.url });
    }
    set(store);
  });
  afterAll(async () => {
    await store?.close();
    await throwaway?.drop();
    await embedded?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });
}

/** A valid completion record for store tests; `over` replaces fields. */
export function completionRecord(id: string, over: Partial<CompletionRecord> = {}): CompletionRecord {
  return {
    id,
    endpoint: 'chat.completions',
    status: 'completed',
    error: null,
    createdAt: new Date().toISOString(),
    model: 'stories260K',
    policyVersion: 'base',
    request: { model: 'stories260K', messages: [{ role: 'user', content: 'Tell me about a dragon' }], n: 2 },
    messages: [{ role: 'user', content: 'Tell me about a dragon' }],
    prompts: null,
    choices: [
      { index: 0, promptIndex: 0, text: 'Once upon a time a dragon slept.', finishReason: 'stop', tokenIds: [1, 2], logprobs: null },
      { index: 1, promptIndex: 0, text: 'The dragon was kind.', finishReason: 'length', tokenIds: [3], logprobs: null },
    ],
    usage: { promptTokens: 5, completionTokens: 3, totalTokens: 8 },
    latencies: { ttftMs: 3, e2eMs: 10, policyTtftMs: 2, policyE2eMs: 9 },
    stream: false,
    user: null,
    keyId: 'key_aaaaaaaaaaaa',
    requestId: 'req_1',
    gatewayInstanceId: 'gateway-1',
    ...over,
  };
}

export function feedbackEvent(completionId: string, over: Partial<FeedbackEvent> = {}): FeedbackEvent {
  return {
    id: `fb-${newTimeOrderedId()}`,
    completionId,
    choiceIndex: 0,
    kind: 'thumbs',
    value: 'up',
    comment: null,
    author: null,
    source: 'user',
    keyId: 'key_aaaaaaaaaaaa',
    idempotencyKey: null,
    createdAt: new Date().toISOString(),
    requestId: 'req_2',
    gatewayInstanceId: 'gateway-1',
    ...over,
  };
}
