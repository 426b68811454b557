/**
 * The OpenAI-compatible gateway end to end: the official `openai` SDK as the client, the real gateway
 * and policy processes (stories260K on the native engine) on a private JetStream-enabled NATS. Raw
 * HTTP covers every error case with its exact status, type and param; records are read back from
 * JetStream; a dropped stream is shown to free the policy's sequence at once.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { connect, type NatsConnection } from 'nats';
import OpenAI, { APIError, AuthenticationError, BadRequestError, NotFoundError, PermissionDeniedError, RateLimitError } from 'openai';
import { completionRecordSchema, completionRecordSubject, STREAMS, type CompletionRecord } from '@flywheel/contracts';
import { metricValue, startGatewayMesh, startPrivateNats, type GatewayMesh, type PrivateNats } from './gateway.support';
import { run, serviceEntry, stop, waitFor, freePort } from './support/processes';

jest.setTimeout(180_000);

const KEY = 'sk-gw-test-main-0001';
const LIMITED_KEY = 'sk-gw-test-limited-0002';
const ADMIN_KEY = 'sk-gw-test-admin-0003';
const MODEL = 'stories260K';

let nats: PrivateNats;
let mesh: GatewayMesh;
let nc: NatsConnection;
let client: OpenAI;
let stateDir: string;

beforeAll(async () => {
  stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-gw-'));
  const keysFile = path.join(stateDir, 'keys.txt');
  writeFileSync(keysFile, `# test keys\n${KEY} name=main\n${LIMITED_KEY} name=limited rpm=2\n`);
  nats = await startPrivateNats();
  mesh = await startGatewayMesh(nats.url, KEY, {
    FLYWHEEL_API_KEYS_FILE: keysFile,
    FLYWHEEL_ADMIN_KEYS: ADMIN_KEY,
    FLYWHEEL_STATE_DIR: stateDir,
    FLYWHEEL_GENERATE_TIMEOUT_MS: '3000',
    FLYWHEEL_LOG_LEVEL: 'log',
  });
  nc = await connect({ servers: nats.url });
  client = new OpenAI({ apiKey: KEY, baseURL: `${mesh.gatewayUrl}/v1`, maxRetries: 0 });
});

afterAll(async () => {
  await nc?.drain();
  await mesh?.stop();
  await nats?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

const user = (content: string) => [{ role: 'user' as const, content }];

async function recordOf(id: string): Promise<{ record: CompletionRecord; msgId: string | undefined }> {
  const jsm = await nc.jetstreamManager();
  const msg = await jsm.streams.getMessage(STREAMS.completions.name, { last_by_subj: completionRecordSubject(id) });
  return { record: completionRecordSchema.parse(msg.json()), msgId: msg.header?.get('Nats-Msg-Id') };
}

async function post(route: string, body: string | object, headers: Record<string, string> = {}) {
  const res = await fetch(`${mesh.gatewayUrl}${route}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: res.status, headers: res.headers, text, json };
}

describe('models', () => {
  it('lists the served model with its version, and retrieves it by id', async () => {
    const page = await client.models.list();
    expect(page.data.map((m) => m.id)).toEqual([MODEL]);
    const model = await client.models.retrieve(MODEL);
    expect(model).toMatchObject({ id: MODEL, object: 'model', owned_by: 'flywheel', policy_version: 'base', context_length: 512 });
    // The served weight type and the stored types of its matrices (stories260K serves f32).
    expect(model).toMatchObject({ dtype: 'f32', weight_types: { f32: expect.any(Number) } });
    expect(model.created).toBeGreaterThan(1_600_000_000);
    await expect(client.models.retrieve('gpt-4o')).rejects.toBeInstanceOf(NotFoundError);
  });
});

describe('chat completions', () => {
  it('answers a non-streaming chat with id, fingerprint, usage, and records it on JetStream first', async () => {
    // Seeded, as the streamed case below: twelve unseeded sampled tokens can, rarely, be ones the output check blocks
    // (content_filter), which CI once drew.
    const res = await client.chat.completions.create({ model: MODEL, messages: user('Once upon a time'), max_tokens: 12, user: 'alice', seed: 7 });
    expect(res.id).toMatch(/^chatcmpl-[0-9a-f]{32}$/);
    expect(res.object).toBe('chat.completion');
    expect(res.system_fingerprint).toBe('base');
    expect(res.choices).toHaveLength(1);
    expect(res.choices[0]!.message.role).toBe('assistant');
    expect(typeof res.choices[0]!.message.content).toBe('string');
    expect(['stop', 'length']).toContain(res.choices[0]!.finish_reason);
    expect(res.usage!.completion_tokens).toBeGreaterThan(0);
    expect(res.usage!.completion_tokens).toBeLessThanOrEqual(12);
    expect(res.usage!.total_tokens).toBe(res.usage!.prompt_tokens + res.usage!.completion_tokens);
    // The record was acknowledged by JetStream before the response was sent.
    const { record, msgId } = await recordOf(res.id);
    expect(msgId).toBe(res.id);
    expect(record).toMatchObject({
      id: res.id,
      endpoint: 'chat.completions',
      status: 'completed',
      model: MODEL,
      policyVersion: 'base',
      messages: [{ role: 'user', content: 'Once upon a time' }],
      user: 'alice',
      stream: false,
      usage: { promptTokens: res.usage!.prompt_tokens, completionTokens: res.usage!.completion_tokens },
    });
    expect(record.choices[0]!.text).toBe(res.choices[0]!.message.content);
    expect(record.keyId).toMatch(/^key_[0-9a-f]{12}$/);
    expect(JSON.stringify(record)).not.toContain(KEY);
    expect(record.request).toMatchObject({ model: MODEL, max_tokens: 12 });
  });

  it('streams SSE chunks exactly as OpenAI: role first, content deltas, finish_reason, usage chunk, [DONE]', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: user('Tell me a story'),
      max_tokens: 10,
      // Seeded: ten sampled tokens of the tiny model can, rarely, be ones the output check blocks (content_filter).
      seed: 7,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    const id = chunks[0]!.id;
    expect(chunks.every((c) => c.id === id && c.object === 'chat.completion.chunk' && c.system_fingerprint === 'base')).toBe(true);
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');
    const usageChunk = chunks.at(-1)!;
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage!.completion_tokens).toBe(10);
    const choiceChunks = chunks.slice(0, -1);
    expect(choiceChunks.every((c) => c.usage === null)).toBe(true);
    const last = choiceChunks.at(-1)!;
    expect(last.choices[0]!.finish_reason).toBe('length');
    expect(choiceChunks.slice(0, -1).every((c) => c.choices[0]!.finish_reason === null)).toBe(true);
    const text = choiceChunks.map((c) => c.choices[0]!.delta.content ?? '').join('');
    const { record } = await recordOf(id);
    expect(record.choices[0]!.text).toBe(text);
    expect(record.stream).toBe(true);
    expect(record.latencies.ttftMs).not.toBeNull();
  });

  it('ends the raw SSE body with data: [DONE] and sends no usage without include_usage', async () => {
    const res = await post('/v1/chat/completions', { model: MODEL, messages: user('Hi'), max_tokens: 3, stream: true });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(res.text.endsWith('data: [DONE]\n\n')).toBe(true);
    const events = res.text.trim().split('\n\n');
    expect(events.every((e) => e.startsWith('data: '))).toBe(true);
    expect(events.slice(0, -1).map((e) => JSON.parse(e.slice(6))).every((c) => !('usage' in c))).toBe(true);
  });

  it('returns n choices, streaming and not', async () => {
    const res = await client.chat.completions.create({ model: MODEL, messages: user('The dog'), max_tokens: 8, n: 2, seed: 7 });
    expect(res.choices.map((c) => c.index)).toEqual([0, 1]);
    const stream = await client.chat.completions.create({ model: MODEL, messages: user('The dog'), max_tokens: 8, n: 2, stream: true });
    const finished = new Map<number, string | null>();
    const roles = new Set<number>();
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        if (c.delta.role) roles.add(c.index);
        if (c.finish_reason) finished.set(c.index, c.finish_reason);
      }
    }
    expect([...roles].sort()).toEqual([0, 1]);
    expect([...finished.keys()].sort()).toEqual([0, 1]);
  });

  it('stops at a stop string', async () => {
    const base = { model: MODEL, messages: user('Once upon a time there was'), max_tokens: 40, temperature: 0 };
    const free = (await client.chat.completions.create(base)).choices[0]!.message.content!;
    expect(free.length).toBeGreaterThan(10);
    const stop = free.slice(6, 9);
    const cut = free.slice(0, free.indexOf(stop));
    const stopped = await client.chat.completions.create({ ...base, stop: [stop] });
    expect(stopped.choices[0]!.message.content).toBe(cut);
    expect(stopped.choices[0]!.finish_reason).toBe('stop');
  });

  it('reproduces a sampled answer with the same seed', async () => {
    const ask = (seed: number) =>
      client.chat.completions.create({ model: MODEL, messages: user('A little bird'), max_tokens: 24, temperature: 1, seed });
    const [a, b, c] = await Promise.all([ask(1234), ask(1234), ask(99)]);
    expect(a.choices[0]!.message.content).toBe(b.choices[0]!.message.content);
    expect(c.choices[0]!.message.content).not.toBe(a.choices[0]!.message.content);
  });

  it('returns logprobs with top_logprobs per token', async () => {
    const res = await client.chat.completions.create({ model: MODEL, messages: user('Lily'), max_tokens: 6, logprobs: true, top_logprobs: 3 });
    const content = res.choices[0]!.logprobs!.content!;
    expect(content).toHaveLength(res.usage!.completion_tokens);
    for (const t of content) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(t.top_logprobs).toHaveLength(3);
      expect(t.bytes).toEqual([...Buffer.from(t.token, 'utf8')]);
    }
  });
});

describe('completions', () => {
  it('completes a prompt, echoes it, and answers an array of prompts with one choice each', async () => {
    const one = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 5, echo: true });
    expect(one.id).toMatch(/^cmpl-/);
    expect(one.object).toBe('text_completion');
    expect(one.choices[0]!.text.startsWith('Once upon a time')).toBe(true);
    expect(one.system_fingerprint).toBe('base');
    const many = await client.completions.create({ model: MODEL, prompt: ['The cat', 'The sun'], max_tokens: 4, n: 2 });
    expect(many.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    const { record } = await recordOf(many.id);
    expect(record.prompts).toEqual(['The cat', 'The sun']);
    expect(record.choices.map((c) => c.promptIndex)).toEqual([0, 0, 1, 1]);
  });

  it('uses 16 tokens by default, returns legacy logprobs and streams with usage', async () => {
    const res = await client.completions.create({ model: MODEL, prompt: 'Tim', logprobs: 2, temperature: 0 });
    expect(res.usage!.completion_tokens).toBeLessThanOrEqual(16);
    const lp = res.choices[0]!.logprobs!;
    expect(lp.tokens).toHaveLength(res.usage!.completion_tokens);
    expect(lp.token_logprobs).toHaveLength(lp.tokens!.length);
    expect(Object.keys(lp.top_logprobs![0]!).length).toBeGreaterThanOrEqual(1);
    expect(lp.text_offset![0]).toBe(0);
    const stream = await client.completions.create({ model: MODEL, prompt: 'Tim', max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage: OpenAI.Completions.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.text ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(res.choices[0]!.text);
    expect(usage!.completion_tokens).toBe(res.usage!.completion_tokens);
  });

  it('accepts token-id prompts', async () => {
    const res = await client.completions.create({ model: MODEL, prompt: [1, 403, 407], max_tokens: 3 });
    expect(res.usage!.prompt_tokens).toBe(3);
  });
});

describe('errors the SDK parses into its typed classes', () => {
  it('401 for a missing or wrong key', async () => {
    const bad = new OpenAI({ apiKey: 'sk-wrong-key-0000', baseURL: `${mesh.gatewayUrl}/v1`, maxRetries: 0 });
    const err = await bad.models.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthenticationError);
    expect((err as APIError).code).toBe('invalid_api_key');
    const none = await post('/v1/chat/completions', {}, { authorization: '' });
    expect(none.status).toBe(401);
    expect(none.json.error.type).toBe('authentication_error');
  });

  it('403 for an admin key on /v1', async () => {
    const admin = new OpenAI({ apiKey: ADMIN_KEY, baseURL: `${mesh.gatewayUrl}/v1`, maxRetries: 0 });
    await expect(admin.models.list()).rejects.toBeInstanceOf(PermissionDeniedError);
  });

  it('400 naming the parameter, 404 for an unknown model', async () => {
    const err = await client.chat.completions.create({ model: MODEL, messages: user('x'), temperature: 5 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadRequestError);
    expect((err as APIError).param).toBe('temperature');
    const nf = await client.chat.completions.create({ model: 'gpt-4o', messages: user('x') }).catch((e: unknown) => e);
    expect(nf).toBeInstanceOf(NotFoundError);
    expect((nf as APIError).code).toBe('model_not_found');
  });

  it('429 with Retry-After once a key spends its requests per minute', async () => {
    const limited = new OpenAI({ apiKey: LIMITED_KEY, baseURL: `${mesh.gatewayUrl}/v1`, maxRetries: 0 });
    await limited.models.list();
    await limited.models.list();
    const err = await limited.models.list().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RateLimitError);
    expect((err as APIError).code).toBe('rate_limit_exceeded');
    expect(Number((err as APIError).headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((err as APIError).headers?.get('x-ratelimit-limit-requests')).toBe('2');
    // Other keys keep their own budget.
    await expect(client.models.list()).resolves.toBeDefined();
  });
});

describe('raw HTTP error cases', () => {
  const chat = { model: MODEL, messages: user('hi'), max_tokens: 2 };

  it.each([
    ['malformed JSON', '{"model": ', 400, 'invalid_request_error', null, 'invalid_json'],
    ['a JSON array body', '[1,2]', 400, 'invalid_request_error', null, null],
    ['a wrong type', { ...chat, max_tokens: 'ten' }, 400, 'invalid_request_error', 'max_tokens', 'invalid_type'],
    ['a nested wrong type', { ...chat, messages: [{ role: 'user', content: 7 }] }, 400, 'invalid_request_error', 'messages[0].content', 'invalid_type'],
    ['a missing field', { model: MODEL }, 400, 'invalid_request_error', 'messages', null],
    ['an unknown parameter', { ...chat, best_of_chat: 2 }, 400, 'invalid_request_error', 'best_of_chat', null],
    ['tools with a bad schema', { ...chat, tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', allOf: [] } } }] }, 400, 'invalid_request_error', 'tools[0].function.parameters.allOf', 'invalid_json_schema'],
    ['tool_choice without tools', { ...chat, tool_choice: 'auto' }, 400, 'invalid_request_error', 'tool_choice', null],
    ['functions (deprecated)', { ...chat, functions: [{ name: 'f' }] }, 400, 'invalid_request_error', 'functions', 'unsupported_parameter'],
    ['response_format of an unknown type', { ...chat, response_format: { type: 'yaml' } }, 400, 'invalid_request_error', 'response_format.type', 'invalid_value'],
    ['stream_options without stream', { ...chat, stream_options: { include_usage: true } }, 400, 'invalid_request_error', 'stream_options', null],
    ['top_logprobs without logprobs', { ...chat, top_logprobs: 2 }, 400, 'invalid_request_error', 'top_logprobs', null],
    ['logit_bias outside the vocabulary', { ...chat, logit_bias: { '999999': 5 } }, 400, 'invalid_request_error', 'logit_bias', 'invalid_value'],
    ['an image part', { ...chat, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 400, 'invalid_request_error', 'messages[0].content[0].type', 'invalid_value'],
    ['max_tokens beyond the context', { ...chat, max_tokens: 5000 }, 400, 'invalid_request_error', 'max_tokens', 'context_length_exceeded'],
    ['an unknown model', { ...chat, model: 'nope' }, 404, 'invalid_request_error', 'model', 'model_not_found'],
  ])('%s', async (_what, body, status, type, param, code) => {
    const res = await post('/v1/chat/completions', body);
    expect(res.status).toBe(status);
    expect(res.json.error).toMatchObject({ type, param, code });
    expect(typeof res.json.error.message).toBe('string');
  });

  it('400 context_length_exceeded when the prompt is longer than the context (decided by the policy)', async () => {
    const res = await post('/v1/completions', { model: MODEL, prompt: 'Once upon a time there was a little girl. '.repeat(80), max_tokens: 10 });
    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({ type: 'invalid_request_error', param: 'prompt', code: 'context_length_exceeded' });
    const stream = await post('/v1/chat/completions', { ...chat, stream: true, messages: user('Lily was happy. '.repeat(200)) });
    expect(stream.status).toBe(400);
    expect(stream.json.error).toMatchObject({ param: 'messages', code: 'context_length_exceeded' });
  });

  it('413 for a body over the limit', async () => {
    // The gateway answers 413 and closes before it has read the whole body, so the client's upload can fail with
    // EPIPE before it reads that answer: a race of the client, not of the gateway. A few tries see the answer.
    let res: Awaited<ReturnType<typeof post>> | null = null;
    for (let attempt = 0; attempt < 5 && res === null; attempt++) {
      res = await post('/v1/chat/completions', { ...chat, messages: user('x'.repeat(1_100_000)) }).catch((err: unknown) => {
        const cause = (err as { cause?: { code?: string } }).cause?.code;
        if (cause === 'EPIPE' || cause === 'ECONNRESET') return null;
        throw err;
      });
    }
    if (res === null) throw new Error('every upload of the oversized body ended in EPIPE/ECONNRESET before the answer');
    expect(res.status).toBe(413);
    expect(res.json.error).toMatchObject({ type: 'invalid_request_error', param: null, code: 'request_too_large' });
  });

  it('404 in OpenAI shape for an unknown route, and completions-only parameters named', async () => {
    const res = await post('/v1/embeddings', { model: MODEL, input: 'x' });
    expect(res.status).toBe(404);
    expect(res.json.error.type).toBe('invalid_request_error');
    const suffix = await post('/v1/completions', { model: MODEL, prompt: 'x', suffix: 'y' });
    expect([suffix.status, suffix.json.error.param]).toEqual([400, 'suffix']);
    const echo = await post('/v1/completions', { model: MODEL, prompt: 'x', echo: true, logprobs: 1 });
    expect([echo.status, echo.json.error.param]).toEqual([400, 'echo']);
    const prompt = await post('/v1/completions', { model: MODEL, prompt: [] });
    expect([prompt.status, prompt.json.error.param]).toEqual([400, 'prompt']);
  });

  it('echoes x-request-id, or makes one', async () => {
    const mine = await post('/v1/chat/completions', chat, { 'x-request-id': 'trace-abc-123' });
    expect(mine.headers.get('x-request-id')).toBe('trace-abc-123');
    const ours = await post('/v1/chat/completions', chat);
    expect(ours.headers.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/);
    // Structured access log: one JSON line per request, the key by id only.
    await waitFor(async () => (mesh.gateway.output().includes('"request_id":"trace-abc-123"') ? true : undefined), 5000, 'access log line');
    const line = mesh.gateway.output().split('\n').find((l) => l.includes('"request_id":"trace-abc-123"'))!;
    expect(JSON.parse(line)).toMatchObject({ msg: 'request', status: 200, endpoint: '/v1/chat/completions', method: 'POST' });
    expect(mesh.gateway.output()).not.toContain(KEY);
  });
});

describe('client disconnect', () => {
  it('cancels the generation: the policy running-sequence count drops at once', async () => {
    const running = async () => metricValue(await (await fetch(mesh.policyMetricsUrl)).text(), 'flywheel_num_requests_running') ?? -1;
    expect(await running()).toBe(0);
    const abort = new AbortController();
    const res = await fetch(`${mesh.gatewayUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: user('Once upon a time'), max_tokens: 450, stream: true, temperature: 1, logit_bias: { '2': -100 } }),
      signal: abort.signal,
    });
    const reader = res.body!.getReader();
    let seen = '';
    while (!/"content":"[^"]/.test(seen)) {
      const { done, value } = await reader.read();
      if (done) throw new Error(`stream ended before any content: ${seen}`);
      seen += new TextDecoder().decode(value);
    }
    const id = /"id":"(chatcmpl-[0-9a-f]+)"/.exec(seen)![1]!;
    expect(await running()).toBe(1);
    abort.abort();
    const dropped = performance.now();
    await waitFor(async () => ((await running()) === 0 ? true : undefined), 2000, 'running sequences back to 0');
    expect(performance.now() - dropped).toBeLessThan(1000);
    const { record } = await waitFor(() => recordOf(id).catch(() => undefined), 5000, 'cancelled record');
    expect(record.status).toBe('cancelled');
    expect(record.usage.completionTokens).toBeLessThan(450);
  });
});

describe('metrics', () => {
  it('counts requests by endpoint and status and observes client-seen TTFT', async () => {
    const text = await (await fetch(`${mesh.gatewayUrl}/metrics`)).text();
    expect(metricValue(text, 'flywheel_gateway_requests_total', { endpoint: '/v1/chat/completions', status: '200' })).toBeGreaterThan(3);
    expect(metricValue(text, 'flywheel_gateway_requests_total', { endpoint: '/v1/chat/completions', status: '400' })).toBeGreaterThan(3);
    expect(metricValue(text, 'flywheel_gateway_requests_total', { endpoint: '/v1/chat/completions', status: '499' })).toBe(1);
    expect(metricValue(text, 'flywheel_gateway_time_to_first_token_seconds_count', { endpoint: '/v1/chat/completions' })).toBeGreaterThan(2);
    expect(metricValue(text, 'flywheel_gateway_e2e_request_latency_seconds_count', { endpoint: '/v1/models' })).toBeGreaterThan(0);
  });
});

describe('policy going away', () => {
  it('ends a started stream with an error event, then answers 503', async () => {
    const stream = await client.chat.completions.create({ model: MODEL, messages: user('Once upon a time'), max_tokens: 450, stream: true, logit_bias: { '2': -100 } });
    let chunks = 0;
    const consumed = (async () => {
      for await (const _chunk of stream) {
        chunks += 1;
        if (chunks === 3) mesh.policy.child.kill('SIGKILL');
      }
    })();
    const err = await consumed.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).message).toMatch(/did not answer in time|unavailable/);
    await mesh.policy.exited;
    const res = await post('/v1/chat/completions', { model: MODEL, messages: user('hi'), max_tokens: 2 });
    expect(res.status).toBe(503);
    expect(res.json.error).toMatchObject({ type: 'server_error', code: 'service_unavailable' });
    expect(res.headers.get('retry-after')).toBe('1');
  });
});

describe('dev key', () => {
  it('is created in the state folder, printed once at start, and accepted', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'flywheel-devkey-'));
    const port = await freePort();
    const gw = run(process.execPath, [serviceEntry('gateway')], { NATS_URL: nats.url, FLYWHEEL_STATE_DIR: dir, FLYWHEEL_GATEWAY_PORT: String(port) });
    try {
      const file = path.join(dir, 'dev-api-key');
      const key = await waitFor(async () => readFileSync(file, 'utf8').trim() || undefined, 30_000, 'dev key file');
      await waitFor(async () => (gw.output().includes('listening') ? true : undefined), 30_000, 'gateway listening');
      expect(gw.output().split(key).length - 1).toBe(1);
      const ok = await fetch(`http://127.0.0.1:${port}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
      // The policy is gone (previous test): authenticated, then 503 — not 401.
      expect(ok.status).toBe(503);
      const no = await fetch(`http://127.0.0.1:${port}/v1/models`, { headers: { authorization: 'Bearer sk-nope-nope-nope' } });
      expect(no.status).toBe(401);
    } finally {
      await stop(gw);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
