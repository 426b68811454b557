/**
 * vLLM's sampling extensions and /tokenize + /detokenize through the real gateway and policy (stories260K
 * on the native engine, private JetStream NATS), with the official `openai` SDK sending the extensions as
 * extra body parameters. Effects are checked against greedy decoding of the same prompt; the sampler math
 * itself is in libs/model (sampler.spec.ts, engine.spec.ts).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI, { BadRequestError } from 'openai';
import { startGatewayMesh, startPrivateNats, type GatewayMesh, type PrivateNats } from './gateway.support';

jest.setTimeout(180_000);

const KEY = 'sk-sampling-ext-test-0001';
const MODEL = 'stories260K';
const PROMPT = 'Once upon a time';
/** BOS + "Once upon a time", and the first golden greedy ids after it (libs/model engine fixtures). */
const PROMPT_IDS = [1, 403, 407, 261, 378];
const GOLDEN_HEAD = [432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426];

let nats: PrivateNats;
let mesh: GatewayMesh;
let client: OpenAI;
let stateDir: string;

beforeAll(async () => {
  stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-sampling-ext-'));
  nats = await startPrivateNats();
  mesh = await startGatewayMesh(nats.url, KEY, { FLYWHEEL_API_KEYS: KEY, FLYWHEEL_STATE_DIR: stateDir });
  client = new OpenAI({ apiKey: KEY, baseURL: `${mesh.gatewayUrl}/v1`, maxRetries: 0 });
});

afterAll(async () => {
  await mesh?.stop();
  await nats?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

/** The SDK's types do not know vLLM's fields; they travel as extra body params like any vLLM client sends them. */
type Extra = Record<string, unknown>;
const complete = (extra: Extra) =>
  client.completions.create({ model: MODEL, prompt: PROMPT, temperature: 0, ...extra } as OpenAI.CompletionCreateParamsNonStreaming);
const chat = (extra: Extra) =>
  client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'Tell me a story.' }],
    temperature: 0,
    ...extra,
  } as OpenAI.ChatCompletionCreateParamsNonStreaming);

async function post(route: string, body: object, key: string | null = KEY) {
  const res = await fetch(`${mesh.gatewayUrl}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, json: (await res.json()) as any };
}

describe('sampling extensions on /v1/completions', () => {
  /** Greedy tokens until the model's own EOS. */
  let untilEos: number;
  beforeAll(async () => {
    const res = await complete({ max_tokens: 400 });
    expect(res.choices[0]!.finish_reason).toBe('stop');
    untilEos = res.usage!.completion_tokens;
    expect(untilEos).toBeGreaterThan(GOLDEN_HEAD.length);
  });

  it('ignore_eos + max_tokens gives exactly max_tokens tokens', async () => {
    const res = await complete({ max_tokens: untilEos + 5, ignore_eos: true });
    expect(res.choices[0]!.finish_reason).toBe('length');
    expect(res.usage!.completion_tokens).toBe(untilEos + 5);
  });

  it('min_tokens prevents the early stop at EOS', async () => {
    const res = await complete({ max_tokens: 400, min_tokens: untilEos + 3 });
    expect(res.usage!.completion_tokens).toBeGreaterThanOrEqual(untilEos + 3);
  });

  it('stop_token_ids stops at the first generated stop id', async () => {
    const stopId = GOLDEN_HEAD.at(-1)!;
    const res = await complete({ max_tokens: 64, stop_token_ids: [stopId] });
    expect(res.choices[0]!.finish_reason).toBe('stop');
    expect(res.usage!.completion_tokens).toBe(GOLDEN_HEAD.length);
  });

  it('repetition_penalty changes the greedy output', async () => {
    const plain = await complete({ max_tokens: 32 });
    const penalized = await complete({ max_tokens: 32, repetition_penalty: 1.5 });
    expect(penalized.choices[0]!.text).not.toBe(plain.choices[0]!.text);
    expect((await complete({ max_tokens: 32, repetition_penalty: 1 })).choices[0]!.text).toBe(plain.choices[0]!.text);
  });

  it('min_p 1 keeps only the most likely token: every sampled choice is the greedy text', async () => {
    const greedy = await complete({ max_tokens: 20 });
    const sampled = await complete({ max_tokens: 20, temperature: 1.5, n: 3, min_p: 1 });
    for (const c of sampled.choices) expect(c.text).toBe(greedy.choices[0]!.text);
  });

  it('skip_special_tokens false keeps the special EOS text that ignore_eos generated through', async () => {
    const kept = await complete({ max_tokens: untilEos + 2, ignore_eos: true, skip_special_tokens: false });
    const skipped = await complete({ max_tokens: untilEos + 2, ignore_eos: true });
    expect(kept.choices[0]!.text).toMatch(/<\/?s>/);
    expect(skipped.choices[0]!.text).not.toMatch(/<\/?s>/);
  });
});

describe('sampling extensions on /v1/chat/completions', () => {
  it('ignore_eos, min_tokens and chat_template_kwargs reach the chat generation', async () => {
    const long = await chat({ max_tokens: 300, ignore_eos: true });
    expect(long.choices[0]!.finish_reason).toBe('length');
    expect(long.usage!.completion_tokens).toBe(300);
    const plain = await chat({ max_tokens: 300 });
    expect(plain.choices[0]!.finish_reason).toBe('stop');
    const natural = plain.usage!.completion_tokens;
    const min = await chat({ max_tokens: 300, min_tokens: natural + 3 });
    expect(min.usage!.completion_tokens).toBeGreaterThanOrEqual(natural + 3);
    const withKwargs = await chat({ max_tokens: 8, chat_template_kwargs: { enable_thinking: false } });
    expect(withKwargs.choices[0]!.message.content).toBe((await chat({ max_tokens: 8 })).choices[0]!.message.content);
  });

  it.each([
    [{ min_p: 1.5 }, 'min_p'],
    [{ repetition_penalty: 0 }, 'repetition_penalty'],
    [{ stop_token_ids: [1_000_000] }, 'stop_token_ids[0]'],
    [{ min_tokens: -1 }, 'min_tokens'],
    [{ min_tokens: 10, max_tokens: 5 }, 'min_tokens'],
    [{ ignore_eos: 'yes' }, 'ignore_eos'],
    [{ best_of_n: 2 }, 'best_of_n'],
  ])('refuses %j with 400 naming the parameter', async (extra, param) => {
    const err = await chat(extra).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadRequestError);
    expect((err as BadRequestError).param).toBe(param);
    expect((err as BadRequestError).type).toBe('invalid_request_error');
  });
});

describe('/tokenize and /detokenize', () => {
  it('tokenizes a prompt as a completion would, and detokenizes it back', async () => {
    const tok = await post('/tokenize', { model: MODEL, prompt: PROMPT });
    expect(tok.status).toBe(200);
    expect(tok.json).toEqual({ count: PROMPT_IDS.length, max_model_len: expect.any(Number), tokens: PROMPT_IDS });
    const models = await client.models.list();
    expect(tok.json.max_model_len).toBe((models.data[0] as unknown as { context_length: number }).context_length);
    const detok = await post('/detokenize', { model: MODEL, tokens: tok.json.tokens });
    expect(detok).toEqual({ status: 200, json: { prompt: `<s> ${PROMPT}` } });
    const bare = await post('/tokenize', { prompt: PROMPT, add_special_tokens: false });
    expect((await post('/detokenize', { tokens: bare.json.tokens })).json.prompt).toBe(PROMPT);
  });

  it('tokenizes chat messages with the template: the count is a chat completion prompt_tokens', async () => {
    const tok = await post('/tokenize', { messages: [{ role: 'user', content: 'Tell me a story.' }] });
    expect(tok.status).toBe(200);
    const res = await chat({ max_tokens: 1 });
    expect(tok.json.count).toBe(res.usage!.prompt_tokens);
    const noPrompt = await post('/tokenize', { messages: [{ role: 'user', content: 'Tell me a story.' }], add_generation_prompt: false });
    expect(noPrompt.json.count).toBeLessThan(tok.json.count);
  });

  it('answers errors in OpenAI shape with the /v1 auth', async () => {
    expect((await post('/tokenize', { prompt: PROMPT }, null)).status).toBe(401);
    const badModel = await post('/tokenize', { model: 'other', prompt: PROMPT });
    expect(badModel.status).toBe(404);
    expect(badModel.json.error).toMatchObject({ type: 'invalid_request_error', code: 'model_not_found', param: 'model' });
    const badIds = await post('/detokenize', { tokens: [1, 10_000_000] });
    expect(badIds.status).toBe(400);
    expect(badIds.json.error).toMatchObject({ type: 'invalid_request_error', param: 'tokens[1]' });
    const unknown = await post('/tokenize', { prompt: PROMPT, foo: 1 });
    expect(unknown.status).toBe(400);
    expect(unknown.json.error).toMatchObject({ type: 'invalid_request_error', param: 'foo' });
    const missing = await post('/detokenize', {});
    expect(missing.status).toBe(400);
    expect(missing.json.error.param).toBe('tokens');
  });
});
