/**
 * The `prompts` export is an RL prompt set as the trainer reads it: completions recorded in a throwaway database on
 * this machine's Postgres are exported, and the trainer's own reader (TrainerStore + readJobPrompts, as a ppo or grpo
 * job calls them with an export source) gets back every distinct prompt, split into train and held-out.
 */
import { newTimeOrderedId } from '@flywheel/contracts';
import { loadTrainerConfig } from '@flywheel/config';
import { createExport, openStore, writeCompletion, type Store } from '@flywheel/store';
import { completionRecord, createThrowawayDatabase, type ThrowawayDatabase } from '@flywheel/store/testing';
import { readJobPrompts } from '../apps/trainer/src/prompt-set.reader';
import { TrainerStore } from '../apps/trainer/src/trainer.store';

jest.setTimeout(60_000);

const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';

let database: ThrowawayDatabase;
let store: Store;
let trainerStore: TrainerStore;

beforeAll(async () => {
  database = await createThrowawayDatabase(ADMIN_URL);
  store = await openStore({ url: database.url });
  trainerStore = new TrainerStore(loadTrainerConfig({ DATABASE_URL: database.url }));
});

afterAll(async () => {
  await trainerStore?.onApplicationShutdown();
  await store?.close();
  await database?.drop();
});

it('a prompts export is read by the trainer as the prompt set, every distinct prompt once', async () => {
  const t0 = Date.now() - 60_000;
  const asked = (i: number, content: string) =>
    writeCompletion(store.db, completionRecord(`chatcmpl-${newTimeOrderedId()}`, { createdAt: new Date(t0 + i * 1_000).toISOString(), messages: [{ role: 'user', content }] }));
  const topics = ['a dragon', 'a cat', 'a dragon', 'the sea', 'a robot', 'a cat'];
  for (const [i, topic] of topics.entries()) await asked(i, `Tell me about ${topic}`);
  await writeCompletion(
    store.db,
    completionRecord(`cmpl-${newTimeOrderedId()}`, {
      createdAt: new Date(t0 + 10_000).toISOString(),
      endpoint: 'completions',
      request: { model: 'stories260K', prompt: ['Once upon a time', [5, 6]] },
      messages: null,
      prompts: ['Once upon a time', [5, 6]],
    }),
  );

  const exp = await createExport(store.db, { format: 'prompts', filters: {}, filtersRecord: {}, createdBy: 'test' });
  expect(exp.row_count).toBe(5);

  const user = (content: string) => [{ role: 'user', content }];
  const all = await readJobPrompts(trainerStore, { kind: 'export', exportId: exp.id }, 0, 7);
  expect(all.heldout).toEqual([]);
  expect([...all.train].sort((a, b) => a[0]!.content.localeCompare(b[0]!.content))).toEqual(
    ['Once upon a time', 'Tell me about a cat', 'Tell me about a dragon', 'Tell me about a robot', 'Tell me about the sea'].map(user),
  );
  expect(all.references).toEqual([undefined, undefined, undefined, undefined, undefined]);

  const split = await readJobPrompts(trainerStore, { kind: 'export', exportId: exp.id }, 0.4, 7);
  expect(split.heldout).toHaveLength(2);
  expect(split.train).toHaveLength(3);
  expect(new Set([...split.train, ...split.heldout].map((p) => p[0]!.content)).size).toBe(5);
});
