/**
 * The admin API end to end: the compiled gateway on a private JetStream nats-server and a throwaway
 * database on this machine's Postgres. Completions are published on JetStream as the OpenAI API does,
 * feedback goes through POST /v1/feedback, and everything after that through /admin/api with a real
 * session cookie: login, CSRF, user keys refused, inbox filters and pages, reviews with their audit
 * rows, exports checked byte for byte, stats, and the UI's static files.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { JSONCodec, type NatsConnection } from 'nats';
import {
  adminCompletionDetailSchema,
  adminExportListSchema,
  adminExportSchema,
  adminInboxPageSchema,
  adminReviewsResponseSchema,
  adminSessionSchema,
  adminStatsSchema,
  completionRecordSubject,
  newTimeOrderedId,
  type CompletionRecord,
} from '@flywheel/contracts';
import type { Store } from '@flywheel/store';
import { waitFor } from './support/processes';
import { startAdminGateway, type AdminGateway } from './support/admin-gateway';

jest.setTimeout(180_000);

const KEY = 'sk-flywheel-admin-test-user';
const ADMIN_KEY = 'sk-flywheel-admin-test-admin';
const codec = JSONCodec<CompletionRecord>();
const keyIdOf = (key: string) => `key_${createHash('sha256').update(key).digest().subarray(0, 6).toString('hex')}`;

let fixture: AdminGateway;
let gatewayUrl: string;
let stateDir: string;
let uiDir: string;
let nc: NatsConnection;
let reader: Store;

beforeAll(async () => {
  fixture = await startAdminGateway({ userKey: KEY, adminKey: ADMIN_KEY, name: 'admin-test', uiDir: (dir) => path.join(dir, 'admin-ui-dist') });
  ({ gatewayUrl, stateDir, nc, store: reader } = fixture);
  uiDir = path.join(stateDir, 'admin-ui-dist');
});

afterAll(async () => {
  await fixture?.close();
});

const USER_PROMPT = { role: 'user' as const, content: 'Tell me a story' };
const CAT = 'Once upon a time there was a cat.';
const LILY = 'Lily went to the park.';

function record(over: Partial<CompletionRecord> = {}): CompletionRecord {
  const id = `chatcmpl-${newTimeOrderedId()}`;
  return {
    id,
    endpoint: 'chat.completions',
    status: 'completed',
    error: null,
    createdAt: new Date().toISOString(),
    model: 'stories260K',
    policyVersion: 'base',
    request: { model: 'stories260K', messages: [USER_PROMPT], n: 2 },
    messages: [USER_PROMPT],
    prompts: null,
    choices: [
      { index: 0, promptIndex: 0, text: CAT, finishReason: 'stop', tokenIds: [1, 2, 3], logprobs: null },
      { index: 1, promptIndex: 0, text: LILY, finishReason: 'length', tokenIds: [4, 5], logprobs: null },
    ],
    usage: { promptTokens: 6, completionTokens: 5, totalTokens: 11 },
    latencies: { ttftMs: 4, e2eMs: 12, policyTtftMs: 3, policyE2eMs: 11 },
    stream: false,
    user: null,
    keyId: keyIdOf(KEY),
    requestId: `req_${id}`,
    gatewayInstanceId: 'gateway-test',
    ...over,
  };
}

async function publish(...records: CompletionRecord[]): Promise<void> {
  for (const r of records) await nc.jetstream().publish(completionRecordSubject(r.id), codec.encode(r), { msgID: r.id });
  await waitForStored('completions', records.map((r) => r.id));
}

async function waitForStored(table: 'completions' | 'feedback', ids: string[]): Promise<void> {
  await waitFor(
    async () => ((await reader.db.selectFrom(table).select('id').where('id', 'in', ids).execute()).length === ids.length ? true : undefined),
    60_000,
    `${ids.length} rows in ${table}`,
  );
}

/** POST /v1/feedback with the user key; resolves once the store has it. Returns its id. */
async function feedback(body: Record<string, unknown>): Promise<string> {
  const res = await fetch(`${gatewayUrl}/v1/feedback`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json: any = await res.json();
  expect(res.status).toBe(200);
  await waitForStored('feedback', [json.id]);
  return json.id;
}

interface Session {
  cookie: string;
  csrf: string;
}

interface Answer {
  status: number;
  body: any;
  text: string;
  headers: Headers;
}

async function call(method: string, route: string, opts: { session?: Session | null; body?: unknown; csrf?: string | null; headers?: Record<string, string> } = {}): Promise<Answer> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  if (opts.session) headers.cookie = opts.session.cookie;
  const csrf = opts.csrf === undefined ? opts.session?.csrf : opts.csrf;
  if (csrf) headers['x-csrf-token'] = csrf;
  const res = await fetch(`${gatewayUrl}${route}`, { method, headers, ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}) });
  const text = await res.text();
  let body: any = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  return { status: res.status, body, text, headers: res.headers };
}

async function login(key = ADMIN_KEY): Promise<Session> {
  const res = await call('POST', '/admin/api/session', { body: { key } });
  expect(res.status).toBe(200);
  const setCookie = res.headers.get('set-cookie') ?? '';
  return { cookie: setCookie.split(';')[0] ?? '', csrf: res.body.csrf_token };
}

describe('admin API', () => {
  it('logs in with an admin key only, and guards every route with the session and its CSRF token', async () => {
    const anonymous = await call('GET', '/admin/api/inbox');
    expect(anonymous.status).toBe(401);
    expect(anonymous.body.error).toMatchObject({ type: 'authentication_error', code: 'no_session' });
    const bearerUser = await call('GET', '/admin/api/inbox', { headers: { authorization: `Bearer ${KEY}` } });
    expect(bearerUser.status).toBe(403);
    expect(bearerUser.body.error).toMatchObject({ type: 'permission_error', code: 'wrong_key_scope' });
    expect((await call('POST', '/admin/api/session', { body: { key: KEY } })).body.error).toMatchObject({ type: 'permission_error', code: 'wrong_key_scope' });
    expect((await call('POST', '/admin/api/session', { body: { key: KEY } })).status).toBe(403);
    expect((await call('POST', '/admin/api/session', { body: { key: 'sk-not-a-key-at-all' } })).status).toBe(401);
    expect((await call('POST', '/admin/api/session', { body: {} })).body.error).toMatchObject({ type: 'invalid_request_error', param: 'key' });
    // An admin key is no key for /v1.
    expect((await fetch(`${gatewayUrl}/v1/models`, { headers: { authorization: `Bearer ${ADMIN_KEY}` } })).status).toBe(403);

    const res = await call('POST', '/admin/api/session', { body: { key: ADMIN_KEY } });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ csrf_token: expect.any(String), key_id: keyIdOf(ADMIN_KEY), expires_at: expect.any(String) });
    adminSessionSchema.parse(res.body);
    const setCookie = res.headers.get('set-cookie') ?? '';
    expect(setCookie).toMatch(/^flywheel_admin_session=[\w-]{43}; Path=\/admin; HttpOnly; SameSite=Strict; Max-Age=43200$/);
    const session: Session = { cookie: setCookie.split(';')[0] ?? '', csrf: res.body.csrf_token };

    expect((await call('GET', '/admin/api/session', { session })).body).toEqual(res.body);
    expect((await call('GET', '/admin/api/inbox', { session })).status).toBe(200);
    const noCsrf = await call('POST', '/admin/api/reviews', { session, csrf: null, body: { actions: [{ action: 'approve', feedback_id: 'fb-x' }] } });
    expect(noCsrf.status).toBe(403);
    expect(noCsrf.body.error).toMatchObject({ type: 'permission_error', code: 'csrf_failed' });
    const wrongCsrf = await call('POST', '/admin/api/exports', { session, csrf: 'x'.repeat(43), body: { format: 'sft' } });
    expect(wrongCsrf.status).toBe(403);
    expect((await call('DELETE', '/admin/api/session', { session, csrf: null })).status).toBe(403);

    const logout = await call('DELETE', '/admin/api/session', { session });
    expect(logout.status).toBe(204);
    expect(logout.headers.get('set-cookie')).toMatch(/^flywheel_admin_session=; Path=\/admin; HttpOnly; SameSite=Strict; Max-Age=0$/);
    expect((await call('GET', '/admin/api/inbox', { session })).status).toBe(401);
  });

  it('approves feedback posted through the feedback API and writes the audit row in the same step', async () => {
    const session = await login();
    const r = record();
    await publish(r);
    const id = await feedback({ completion_id: r.id, choice_index: 0, kind: 'thumbs', value: 'up', comment: 'lovely cat' });

    const inbox = await call('GET', `/admin/api/inbox?status=pending&q=${encodeURIComponent('lovely cat')}`, { session });
    expect(inbox.status).toBe(200);
    expect(inbox.body).toMatchObject({ object: 'list', view: 'feedback', next_cursor: null });
    adminInboxPageSchema.parse(inbox.body);
    expect(inbox.body.data).toEqual([
      expect.objectContaining({ id, completion_id: r.id, kind: 'thumbs', value: 'up', review_status: 'pending', completion_preview: `Tell me a story\n${CAT}\n${LILY}` }),
    ]);

    const approved = await call('POST', '/admin/api/reviews', { session, body: { actions: [{ action: 'approve', feedback_id: id, note: 'good' }] } });
    expect(approved.status).toBe(200);
    expect(approved.body).toMatchObject({ applied: 1, failed: 0 });
    adminReviewsResponseSchema.parse(approved.body);
    expect(approved.body.results[0]).toMatchObject({
      ok: true,
      index: 0,
      feedback: { id, review_status: 'approved', reviewed_by: keyIdOf(ADMIN_KEY) },
      review: { target_type: 'feedback', target_id: id, actor: keyIdOf(ADMIN_KEY), action: 'approve', from_status: 'pending', to_status: 'approved', note: 'good' },
    });

    const audit = await reader.db.selectFrom('reviews').selectAll().where('target_id', '=', id).execute();
    expect(audit).toEqual([
      expect.objectContaining({ actor: keyIdOf(ADMIN_KEY), action: 'approve', from_status: 'pending', to_status: 'approved', note: 'good', before: { review_status: 'pending', value: 'up' }, after: { review_status: 'approved', value: 'up' } }),
    ]);
    const stored = await reader.db.selectFrom('feedback').select(['review_status', 'reviewed_by', 'reviewed_at']).where('id', '=', id).executeTakeFirstOrThrow();
    expect(stored).toMatchObject({ review_status: 'approved', reviewed_by: keyIdOf(ADMIN_KEY) });
    expect(stored.reviewed_at).toBeInstanceOf(Date);

    const detail = await call('GET', `/admin/api/completions/${r.id}`, { session });
    expect(detail.status).toBe(200);
    adminCompletionDetailSchema.parse(detail.body);
    expect(detail.body).toMatchObject({
      id: r.id,
      messages: [USER_PROMPT],
      choices: [
        { index: 0, prompt_index: 0, text: CAT, finish_reason: 'stop', token_count: 3 },
        { index: 1, prompt_index: 0, text: LILY, finish_reason: 'length', token_count: 2 },
      ],
      moderation: null,
      reward_score: null,
      review_status: 'approved',
      feedback: [{ id, review_status: 'approved' }],
      reviews: [{ target_id: id, action: 'approve' }],
    });
    const missing = await call('GET', '/admin/api/completions/chatcmpl-nope', { session });
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ code: 'completion_not_found' });
  });

  it('filters the inbox and walks it page by page', async () => {
    const session = await login();
    const version = `pv-${newTimeOrderedId().slice(-8)}`;
    // b is the newer one (ids alone do not order two records made in the same millisecond).
    const a = record({ policyVersion: version, createdAt: new Date(Date.now() - 1_000).toISOString() });
    const b = record({ policyVersion: version, messages: [{ role: 'user', content: 'A tale about an okapi' }] });
    await publish(a, b);
    const ids = [
      await feedback({ completion_id: a.id, choice_index: 0, kind: 'rating', value: 4 }),
      await feedback({ completion_id: a.id, choice_index: 1, kind: 'rating', value: 2 }),
      await feedback({ completion_id: a.id, kind: 'flag', value: 'incorrect', comment: 'the okapi is wrong' }),
      await feedback({ completion_id: b.id, choice_index: 0, kind: 'thumbs', value: 'down' }),
      await feedback({ completion_id: b.id, kind: 'correction', choice_index: 1, value: 'An okapi is a forest giraffe.' }),
    ];
    const newestFirst = [...ids].reverse();
    const list = async (query: string) => {
      const res = await call('GET', `/admin/api/inbox?policy_version=${version}&${query}`, { session });
      expect(res.status).toBe(200);
      return res.body;
    };
    expect((await list('')).data.map((f: any) => f.id)).toEqual(newestFirst);
    expect((await list('kind=rating')).data.map((f: any) => f.value)).toEqual([2, 4]);
    expect((await list('flagged=true')).data.map((f: any) => f.id)).toEqual([ids[2]]);
    expect((await list('q=OKAPI')).data.map((f: any) => f.id)).toEqual([ids[4], ids[2]]);
    expect((await list('status=approved')).data).toEqual([]);
    expect((await list(`from=${encodeURIComponent('2000-01-01T00:00:00Z')}&to=${encodeURIComponent('2001-01-01')}`)).data).toEqual([]);

    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: any = await list(`limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      seen.push(...page.data.map((f: any) => f.id));
      cursor = page.next_cursor;
      pages++;
    } while (cursor);
    expect(seen).toEqual(newestFirst);
    expect(pages).toBe(3);

    const completions = await list('view=completions');
    expect(completions).toMatchObject({ view: 'completions', next_cursor: null });
    adminInboxPageSchema.parse(completions);
    expect(completions.data).toEqual([
      expect.objectContaining({ id: b.id, policy_version: version, choice_count: 2, feedback_count: 2, flagged: false, review_status: 'pending', preview: expect.stringContaining('okapi') }),
      expect.objectContaining({ id: a.id, feedback_count: 3, flagged: true }),
    ]);
    expect((await list('view=completions&flagged=true')).data.map((c: any) => c.id)).toEqual([a.id]);
    expect((await call('GET', '/admin/api/policy-versions', { session })).body.data).toContain(version);

    const badCursor = await call('GET', '/admin/api/inbox?cursor=nonsense', { session });
    expect(badCursor.status).toBe(400);
    expect(badCursor.body.error).toMatchObject({ type: 'invalid_request_error', param: 'cursor' });
    expect((await call('GET', '/admin/api/inbox?view=completions&kind=rating', { session })).body.error).toMatchObject({ param: 'kind' });
    expect((await call('GET', '/admin/api/inbox?status=maybe', { session })).body.error).toMatchObject({ param: 'status', code: 'invalid_value' });
    expect((await call('GET', '/admin/api/inbox?limit=5000', { session })).status).toBe(400);
  });

  describe('a reviewed set of feedback', () => {
    const version = `exp-${newTimeOrderedId().slice(-8)}`;
    let session: Session;
    const chat = record({ policyVersion: version });
    const text = record({
      policyVersion: version,
      // After the chat, so exports that go oldest first list them in a fixed order (a shared millisecond would tie).
      createdAt: new Date(Date.parse(chat.createdAt) + 10).toISOString(),
      endpoint: 'completions',
      request: { model: 'stories260K', prompt: 'Once' },
      messages: null,
      prompts: ['Once'],
      choices: [{ index: 0, promptIndex: 0, text: ' upon a time', finishReason: 'length', tokenIds: [9], logprobs: null }],
    });
    const fb: Record<string, string> = {};

    beforeAll(async () => {
      session = await login();
      await publish(chat, text);
      fb.up = await feedback({ completion_id: chat.id, choice_index: 0, kind: 'thumbs', value: 'up' });
      fb.down = await feedback({ completion_id: chat.id, choice_index: 1, kind: 'thumbs', value: 'down' });
      fb.five = await feedback({ completion_id: chat.id, choice_index: 1, kind: 'rating', value: 5 });
      fb.three = await feedback({ completion_id: chat.id, choice_index: 0, kind: 'rating', value: 3 });
      fb.correction = await feedback({ completion_id: chat.id, choice_index: 0, kind: 'correction', value: 'A cat sat.' });
      fb.preference = await feedback({ completion_id: chat.id, kind: 'preference', value: { chosen: 1, rejected: 0 } });
      fb.one = await feedback({ completion_id: chat.id, choice_index: 0, kind: 'rating', value: 1 });
      fb.flag = await feedback({ completion_id: chat.id, kind: 'flag', value: 'incorrect' });
      fb.textUp = await feedback({ completion_id: text.id, choice_index: 0, kind: 'thumbs', value: 'up' });
    });

    it('applies approve, reject, edit and choose in one bulk request; a bad action fails alone', async () => {
      const actions = [
        ...['up', 'down', 'five', 'three', 'preference', 'flag', 'textUp'].map((k) => ({ action: 'approve', feedback_id: fb[k] })),
        { action: 'reject', feedback_id: fb.one, note: 'harsh' },
        { action: 'edit', feedback_id: fb.correction, text: 'A small cat sat.' },
        { action: 'choose', completion_id: chat.id, chosen: 0, rejected: 1 },
        { action: 'approve', feedback_id: 'fb-missing' },
        { action: 'edit', feedback_id: fb.up, text: 'not a correction' },
        { action: 'choose', completion_id: chat.id, chosen: 0, rejected: 5 },
      ];
      const res = await call('POST', '/admin/api/reviews', { session, body: { actions } });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ applied: 10, failed: 3 });
      adminReviewsResponseSchema.parse(res.body);
      expect(res.body.results.slice(10).map((r: any) => [r.index, r.ok, r.error.code])).toEqual([
        [10, false, 'not_found'],
        [11, false, 'wrong_kind'],
        [12, false, 'invalid_choice'],
      ]);
      const chosen = res.body.results[9];
      expect(chosen.feedback).toMatchObject({ kind: 'preference', source: 'reviewer', value: { chosen: 0, rejected: 1 }, review_status: 'approved', author: keyIdOf(ADMIN_KEY) });
      fb.chosen = chosen.feedback.id;

      const audit = await reader.db
        .selectFrom('reviews')
        .select(['target_id', 'action', 'from_status', 'to_status', 'note', 'before', 'after'])
        .where('target_id', 'in', [fb.one!, fb.correction!, fb.chosen!])
        .orderBy('created_at')
        .execute();
      expect(audit).toEqual([
        { target_id: fb.one, action: 'reject', from_status: 'pending', to_status: 'rejected', note: 'harsh', before: { review_status: 'pending', value: 1 }, after: { review_status: 'rejected', value: 1 } },
        {
          target_id: fb.correction,
          action: 'edit',
          from_status: 'pending',
          to_status: 'approved',
          note: null,
          before: { review_status: 'pending', value: 'A cat sat.' },
          after: { review_status: 'approved', value: 'A small cat sat.' },
        },
        { target_id: fb.chosen, action: 'choose', from_status: 'pending', to_status: 'approved', note: null, before: null, after: { review_status: 'approved', value: { chosen: 0, rejected: 1 } } },
      ]);
      const edited = await reader.db.selectFrom('feedback').select(['value', 'review_status']).where('id', '=', fb.correction!).executeTakeFirstOrThrow();
      expect(edited).toEqual({ value: 'A small cat sat.', review_status: 'approved' });
      const badBody = await call('POST', '/admin/api/reviews', { session, body: { actions: [{ action: 'approve' }] } });
      expect(badBody.status).toBe(400);
      expect(badBody.body.error).toMatchObject({ param: 'actions[0].feedback_id' });
    });

    it('exports approved data as SFT, preference and KTO JSONL and live traffic as prompts, recorded and downloadable', async () => {
      const user = USER_PROMPT;
      const asst = (content: string) => ({ role: 'assistant', content });
      const textPrompt = [{ role: 'user', content: 'Once' }];
      const expected: Record<string, unknown[]> = {
        sft: [{ messages: [user, asst(CAT)] }, { messages: [user, asst(LILY)] }, { messages: [user, asst('A small cat sat.')] }, { messages: [...textPrompt, asst(' upon a time')] }],
        preference: [
          // The approved (edited) correction of choice 0, chosen over what it corrects.
          { prompt: [user], chosen: [asst('A small cat sat.')], rejected: [asst(CAT)] },
          { prompt: [user], chosen: [asst(LILY)], rejected: [asst(CAT)] },
          { prompt: [user], chosen: [asst(CAT)], rejected: [asst(LILY)] },
        ],
        kto: [
          { prompt: [user], completion: [asst(CAT)], label: true },
          { prompt: [user], completion: [asst(LILY)], label: false },
          { prompt: [user], completion: [asst(LILY)], label: true },
          { prompt: [user], completion: [asst('A small cat sat.')], label: true },
          { prompt: textPrompt, completion: [asst(' upon a time')], label: true },
        ],
        // Live traffic's prompts, approved or not.
        prompts: [{ prompt: [user] }, { prompt: textPrompt }],
      };
      for (const format of ['sft', 'preference', 'kto', 'prompts'] as const) {
        const created = await call('POST', '/admin/api/exports', { session, body: { format, filters: { policy_version: version } } });
        expect(created.status).toBe(200);
        const file = expected[format]!.map((line) => `${JSON.stringify(line)}\n`).join('');
        const sha256 = createHash('sha256').update(file).digest('hex');
        expect(created.body).toEqual({
          id: expect.stringMatching(/^exp-/),
          format,
          filters: { policy_version: version },
          row_count: expected[format]!.length,
          bytes: Buffer.byteLength(file),
          sha256,
          created_by: keyIdOf(ADMIN_KEY),
          created_at: expect.any(String),
          download_url: `/admin/api/exports/${created.body.id}/download`,
        });
        adminExportSchema.parse(created.body);
        const download = await call('GET', created.body.download_url, { session });
        expect(download.status).toBe(200);
        expect(download.headers.get('content-type')).toBe('application/x-ndjson; charset=utf-8');
        expect(download.headers.get('content-disposition')).toBe(`attachment; filename="flywheel-${format}-${created.body.id}.jsonl"`);
        expect(download.text).toBe(file);
        const row = await reader.db.selectFrom('exports').select(['format', 'row_count', 'sha256', 'created_by']).where('id', '=', created.body.id).executeTakeFirstOrThrow();
        expect(row).toEqual({ format, row_count: expected[format]!.length, sha256, created_by: keyIdOf(ADMIN_KEY) });
      }
      const listed = await call('GET', '/admin/api/exports', { session });
      adminExportListSchema.parse(listed.body);
      expect(listed.body.data.slice(0, 4).map((e: any) => e.format)).toEqual(['prompts', 'kto', 'preference', 'sft']);
      expect((await call('GET', '/admin/api/exports/exp-nope/download', { session })).status).toBe(404);
      expect((await call('GET', listed.body.data[0].download_url)).status).toBe(401);
      expect((await call('POST', '/admin/api/exports', { session, body: { format: 'dpo' } })).body.error).toMatchObject({ param: 'format' });
    });

    it('reports volume, approval rate and ratings per policy version', async () => {
      const res = await call('GET', `/admin/api/stats?bucket=hour&policy_version=${version}`, { session });
      expect(res.status).toBe(200);
      expect(res.body.bucket).toBe('hour');
      adminStatsSchema.parse(res.body);
      expect(res.body.volume).toHaveLength(49);
      expect(res.body.volume.reduce((n: number, p: any) => n + p.total, 0)).toBe(10);
      expect(res.body.totals).toEqual({
        feedback: 10,
        by_kind: { thumbs: 3, rating: 3, preference: 2, correction: 1, flag: 1, ranking: 0 },
        by_status: { pending: 0, approved: 9, rejected: 1 },
        approval_rate: 0.9,
        rating_distribution: { '1': 1, '2': 0, '3': 1, '4': 0, '5': 1 },
      });
      expect(res.body.per_policy_version).toEqual([
        {
          policy_version: version,
          feedback: 10,
          by_status: { pending: 0, approved: 9, rejected: 1 },
          approval_rate: 0.9,
          rating_distribution: { '1': 1, '2': 0, '3': 1, '4': 0, '5': 1 },
          mean_rating: 3,
          thumbs_up: 2,
          thumbs_down: 1,
        },
      ]);
      // One reviewer decided each feedback and one key rated each choice: nothing to measure agreement on.
      const none = { alpha: null, units: 0, values: 0 };
      expect(res.body.agreement).toEqual({ review_overlap: 1, decisions: none, ratings: none });
      const days = await call('GET', '/admin/api/stats?bucket=day', { session });
      expect(days.body.volume).toHaveLength(31);
      expect(days.body.per_policy_version.map((v: any) => v.policy_version)).toEqual(expect.arrayContaining(['base', version]));
      expect((await call('GET', '/admin/api/stats?bucket=hour&from=2020-01-01', { session })).status).toBe(400);
    });
  });

  it('serves the UI files under /admin, a clear 503 before it is built, and never a file outside it', async () => {
    const before = await call('GET', '/admin');
    expect(before.status).toBe(503);
    expect(before.text).toBe('admin UI not built: run npm run build:admin-ui\n');
    mkdirSync(path.join(uiDir, 'assets'), { recursive: true });
    writeFileSync(path.join(uiDir, 'index.html'), '<!doctype html><title>admin</title>');
    writeFileSync(path.join(uiDir, 'assets', 'index-3f9a2b1c.js'), 'console.log(1)');
    writeFileSync(path.join(stateDir, 'secret.txt'), 'secret');

    const index = await call('GET', '/admin');
    expect([index.status, index.headers.get('content-type'), index.text]).toEqual([200, 'text/html; charset=utf-8', '<!doctype html><title>admin</title>']);
    const asset = await call('GET', '/admin/assets/index-3f9a2b1c.js');
    expect([asset.status, asset.headers.get('content-type'), asset.headers.get('cache-control')]).toEqual([
      200,
      'text/javascript; charset=utf-8',
      'public, max-age=31536000, immutable',
    ]);
    expect((await call('GET', '/admin/inbox/some-route')).text).toBe('<!doctype html><title>admin</title>');
    expect((await call('GET', '/admin/assets/missing.js')).status).toBe(404);
    for (const escape of ['/admin/..%2fsecret.txt', '/admin/%2e%2e/secret.txt', '/admin/assets/..%2f..%2fsecret.txt', '/admin/..%5csecret.txt']) {
      const res = await call('GET', escape);
      expect([escape, res.text]).not.toEqual([escape, 'secret']);
    }
    const unknownApi = await call('GET', '/admin/api/nothing-here');
    expect(unknownApi.status).toBe(404);
    expect(unknownApi.body.error).toMatchObject({ code: 'unknown_url' });
  });
});
