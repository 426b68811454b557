/**
 * The Responses API through the real gateway, policy (stories260K, native engine) and store (a throwaway Postgres
 * database, private JetStream NATS), with the official `openai` SDK: `client.responses.create()` with text,
 * instructions and a json_schema format; `.stream()` with its events and final response; function tools with a
 * forced call, answered by a function_call_output item on `previous_response_id` (the conversation rebuilt from
 * the completion record); bad input as 4xx naming the field.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Ajv from 'ajv';
import OpenAI, { BadRequestError, NotFoundError } from 'openai';
import { createThrowawayDatabase, type ThrowawayDatabase } from '@flywheel/store/testing';
import { startGatewayMesh, startPrivateNats, type GatewayMesh, type PrivateNats } from './gateway.support';

jest.setTimeout(180_000);

const ADMIN_URL = process.env.FLYWHEEL_TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const KEY = 'sk-responses-api-test-001';
const MODEL = 'stories260K';

let nats: PrivateNats;
let database: ThrowawayDatabase;
let mesh: GatewayMesh;
let client: OpenAI;
let stateDir: string;

beforeAll(async () => {
  stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-responses-'));
  nats = await startPrivateNats();
  database = await createThrowawayDatabase(ADMIN_URL);
  mesh = await startGatewayMesh(nats.url, KEY, { FLYWHEEL_API_KEYS: KEY, FLYWHEEL_STATE_DIR: stateDir, DATABASE_URL: database.url, FLYWHEEL_RATE_LIMIT_RPM: '0' });
  client = new OpenAI({ apiKey: KEY, baseURL: `${mesh.gatewayUrl}/v1`, maxRetries: 0 });
});

afterAll(async () => {
  await mesh?.stop();
  await database?.drop();
  await nats?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

const WEATHER: OpenAI.Responses.FunctionTool = {
  type: 'function',
  name: 'get_weather',
  strict: false,
  parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 8 } }, required: ['city'], additionalProperties: false },
};

describe('POST /v1/responses', () => {
  it('text input with instructions: a completed response with one output_text message and usage', async () => {
    const res = await client.responses.create({ model: MODEL, instructions: 'Tell a story.', input: 'Once upon a time', max_output_tokens: 24, temperature: 0 });
    expect(res.object).toBe('response');
    expect(res.id).toMatch(/^resp_/);
    expect(res.status).toBe('incomplete');
    expect(res.incomplete_details).toEqual({ reason: 'max_output_tokens' });
    expect(res.output).toHaveLength(1);
    const message = res.output[0]!;
    expect(message.type).toBe('message');
    expect(res.output_text.length).toBeGreaterThan(0);
    expect(res.usage!.output_tokens).toBe(24);
    expect(res.instructions).toBe('Tell a story.');
  });

  it('a json_schema text format yields valid JSON in output_text', async () => {
    const schema = { type: 'object', properties: { mood: { enum: ['happy', 'sad'] }, n: { type: 'integer', minimum: 0, maximum: 9 } }, required: ['mood', 'n'], additionalProperties: false };
    const res = await client.responses.create({
      model: MODEL,
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'How are you?' }] }],
      text: { format: { type: 'json_schema', name: 'mood', schema, strict: true } },
    });
    expect(res.status).toBe('completed');
    expect(new Ajv().compile(schema)(JSON.parse(res.output_text))).toBe(true);
  });

  it('.stream(): created, deltas, done events in order; the final response matches the deltas', async () => {
    const stream = client.responses.stream({ model: MODEL, input: 'Once upon a time', max_output_tokens: 16, temperature: 0 });
    const types: string[] = [];
    let text = '';
    const seqs: number[] = [];
    for await (const event of stream) {
      types.push(event.type);
      seqs.push(event.sequence_number);
      if (event.type === 'response.output_text.delta') text += event.delta;
    }
    const final = await stream.finalResponse();
    expect(types[0]).toBe('response.created');
    expect(types[1]).toBe('response.in_progress');
    expect(types).toContain('response.output_item.added');
    expect(types).toContain('response.content_part.added');
    expect(types.filter((t) => t === 'response.output_text.delta').length).toBeGreaterThan(1);
    expect(types.slice(-4)).toEqual(['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.incomplete']);
    expect(seqs).toEqual(seqs.map((_, i) => i));
    expect(final.output_text).toBe(text);
    expect(final.usage!.output_tokens).toBe(16);
  });

  it('function tools: a forced call, then its output on previous_response_id continues the conversation', async () => {
    const first = await client.responses.create({ model: MODEL, input: 'Weather in Paris?', tools: [WEATHER], tool_choice: 'required', parallel_tool_calls: false });
    expect(first.status).toBe('completed');
    const call = first.output.find((o): o is OpenAI.Responses.ResponseFunctionToolCall => o.type === 'function_call')!;
    expect(call.name).toBe('get_weather');
    expect(call.call_id).toMatch(/^call_/);
    expect(new Ajv().compile(WEATHER.parameters!)(JSON.parse(call.arguments))).toBe(true);

    const second = await client.responses.create({
      model: MODEL,
      previous_response_id: first.id,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: '{"temperature": 21}' }],
      tools: [WEATHER],
      tool_choice: 'none',
      max_output_tokens: 8,
    });
    expect(second.previous_response_id).toBe(first.id);
    expect(second.output[0]!.type).toBe('message');
    // The prompt was exactly the rebuilt conversation: the user turn, the call, its result (vLLM's /tokenize of it).
    const tokenized = await fetch(`${mesh.gatewayUrl}/tokenize`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify({
        model: MODEL,
        messages: [
          { role: 'user', content: 'Weather in Paris?' },
          { role: 'assistant', content: null, tool_calls: [{ id: call.call_id, type: 'function', function: { name: call.name, arguments: call.arguments } }] },
          { role: 'tool', tool_call_id: call.call_id, content: '{"temperature": 21}' },
        ],
      }),
    });
    expect(((await tokenized.json()) as { count: number }).count).toBe(second.usage!.input_tokens);
  });

  it('store: false is answered and recorded, but cannot be continued', async () => {
    const unstored = await client.responses.create({ model: MODEL, input: 'Once upon a time', max_output_tokens: 4, store: false });
    expect((unstored as unknown as { store: boolean }).store).toBe(false); // echoed, as OpenAI does (the SDK's type omits it)
    await new Promise((resolve) => setTimeout(resolve, 500)); // the record is in the store by now
    const err = await client.responses.create({ model: MODEL, input: 'more', previous_response_id: unstored.id }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NotFoundError);
  });

  it('a streamed function call: output_item.added with the name, argument deltas, then done', async () => {
    const stream = client.responses.stream({ model: MODEL, input: 'Weather?', tools: [WEATHER], tool_choice: 'required', parallel_tool_calls: false });
    const events: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const e of stream) events.push(e);
    const added = events.find((e) => e.type === 'response.output_item.added');
    expect(added && added.type === 'response.output_item.added' && added.item.type === 'function_call' && added.item.name).toBe('get_weather');
    const args = events.flatMap((e) => (e.type === 'response.function_call_arguments.delta' ? [e.delta] : [])).join('');
    const done = events.find((e) => e.type === 'response.function_call_arguments.done');
    expect(done && done.type === 'response.function_call_arguments.done' && done.arguments).toBe(args);
    expect(events[events.length - 1]!.type).toBe('response.completed');
  });

  it('bad input is a 4xx naming the field', async () => {
    const unknownPrevious = await client.responses.create({ model: MODEL, input: 'x', previous_response_id: 'resp_00000000-0000-7000-8000-000000000000' }).catch((e: unknown) => e);
    expect(unknownPrevious).toBeInstanceOf(NotFoundError);
    expect((unknownPrevious as NotFoundError).param).toBe('previous_response_id');
    const badTool = await client.responses
      .create({ model: MODEL, input: 'x', tools: [{ ...WEATHER, parameters: { type: 'object', properties: { a: { type: 'number', multipleOf: 2 } } } }] })
      .catch((e: unknown) => e);
    expect(badTool).toBeInstanceOf(BadRequestError);
    expect((badTool as BadRequestError).param).toBe('tools[0].parameters.properties.a.multipleOf');
    // A function_call_output answering no call, named as the Responses API names it.
    const orphan = await client.responses.create({ model: MODEL, input: [{ role: 'user', content: 'x' }, { type: 'function_call_output', call_id: 'call_nope', output: '1' }] }).catch((e: unknown) => e);
    expect(orphan).toBeInstanceOf(BadRequestError);
    expect((orphan as BadRequestError).param).toBe('input[1].call_id');
    const unknownParam = await client.responses.create({ model: MODEL, input: 'x', background: true } as OpenAI.Responses.ResponseCreateParamsNonStreaming).catch((e: unknown) => e);
    expect(unknownParam).toBeInstanceOf(BadRequestError);
  });
});
