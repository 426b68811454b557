/**
 * Structured outputs and tool calling through the real gateway and policy (stories260K on the native engine,
 * xgrammar masks, private JetStream NATS), with the official `openai` SDK as the client: `.parse()` with a zod
 * schema, strict JSON schemas at temperature 1 over many seeds (Ajv validates every output), forced tool calls
 * streamed and not, a tool round trip, and the 400s of bad schemas and histories. The tiny model cannot call
 * tools on its own; tool_choice 'required' or a named tool makes the grammar write the call, which is parsed
 * from its real output.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Ajv from 'ajv';
import OpenAI, { BadRequestError } from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { startGatewayMesh, startPrivateNats, type GatewayMesh, type PrivateNats } from './gateway.support';

jest.setTimeout(180_000);

const KEY = 'sk-structured-out-test-01';
const MODEL = 'stories260K';

let nats: PrivateNats;
let mesh: GatewayMesh;
let client: OpenAI;
let stateDir: string;

beforeAll(async () => {
  stateDir = mkdtempSync(path.join(tmpdir(), 'flywheel-structured-'));
  nats = await startPrivateNats();
  mesh = await startGatewayMesh(nats.url, KEY, { FLYWHEEL_API_KEYS: KEY, FLYWHEEL_STATE_DIR: stateDir });
  client = new OpenAI({ apiKey: KEY, baseURL: `${mesh.gatewayUrl}/v1`, maxRetries: 0 });
});

afterAll(async () => {
  await mesh?.stop();
  await nats?.stop();
  if (stateDir) rmSync(stateDir, { recursive: true, force: true });
});

async function post(route: string, body: object) {
  const res = await fetch(`${mesh.gatewayUrl}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, json: (await res.json()) as { count: number; tokens: number[]; prompt: string } };
}

const user = (content: string): OpenAI.ChatCompletionMessageParam[] => [{ role: 'user', content }];

/** Small tools: the tiny model's context is 512 tokens of a 512-token vocabulary, and the tools go in the prompt. */
const WEATHER_TOOL: OpenAI.ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 8 }, unit: { enum: ['c', 'f'] } }, required: ['city', 'unit'], additionalProperties: false },
  },
};
const TIME_TOOL: OpenAI.ChatCompletionTool = {
  type: 'function',
  function: { name: 'get_time', parameters: { type: 'object', properties: {}, additionalProperties: false } },
};

describe('response_format', () => {
  it('client.chat.completions.parse() with a zod schema returns a parsed object', async () => {
    const Pet = z.object({ name: z.string().max(10), legs: z.number().int().min(0).max(8), kind: z.enum(['cat', 'dog', 'bird']) });
    const res = await client.chat.completions.parse({
      model: MODEL,
      messages: user('Describe a pet.'),
      response_format: zodResponseFormat(Pet, 'pet'),
      seed: 1,
      max_tokens: 120,
    });
    const parsed = res.choices[0]!.message.parsed;
    expect(Pet.parse(parsed)).toEqual(parsed);
    expect(res.choices[0]!.finish_reason).toBe('stop');
  });

  it('every output of a strict schema parses and validates (8 seeds × n=4 at temperature 1)', async () => {
    const schema = {
      type: 'object',
      properties: {
        title: { type: 'string', minLength: 1, maxLength: 16 },
        year: { type: 'integer', minimum: 1900, maximum: 2100 },
        tags: { type: 'array', items: { type: 'string', enum: ['a', 'b', 'c'] }, minItems: 1, maxItems: 3 },
        rating: { anyOf: [{ type: 'integer', minimum: 1, maximum: 5 }, { type: 'null' }] },
      },
      required: ['title', 'year', 'tags', 'rating'],
      additionalProperties: false,
    };
    const validate = new Ajv().compile(schema);
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, seed) =>
        client.chat.completions.create({
          model: MODEL,
          messages: user('A book, as JSON.'),
          response_format: { type: 'json_schema', json_schema: { name: 'book', schema, strict: true } },
          temperature: 1,
          n: 4,
          seed,
          max_tokens: 150,
        }),
      ),
    );
    const choices = results.flatMap((r) => r.choices);
    expect(choices).toHaveLength(32);
    // The streamed output check may cut an answer (content_filter: the classifier sometimes reads a random title as a
    // threat); every answer the grammar finished parses and validates, and nearly all of them finish.
    const finished = choices.filter((c) => c.finish_reason === 'stop').map((c) => c.message.content!);
    expect(choices.every((c) => c.finish_reason === 'stop' || c.finish_reason === 'content_filter')).toBe(true);
    expect(finished.length).toBeGreaterThanOrEqual(28);
    for (const text of finished) expect(validate(JSON.parse(text))).toBe(true);
    expect(new Set(finished).size).toBeGreaterThan(8);
  });

  it('a streamed json_schema answer concatenates to valid JSON', async () => {
    const schema = { type: 'object', properties: { ok: { type: 'boolean' }, n: { type: 'integer', minimum: 0, maximum: 99 } }, required: ['ok', 'n'], additionalProperties: false };
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: user('Answer.'),
      response_format: { type: 'json_schema', json_schema: { name: 'answer', schema, strict: true } },
      stream: true,
      seed: 5,
    });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(new Ajv().compile(schema)(JSON.parse(text))).toBe(true);
    expect(finish).toBe('stop');
  });

  it.each([
    [{ type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { a: { type: 'integer', multipleOf: 3 } } } } }, 'response_format.json_schema.schema.properties.a.multipleOf'],
    [{ type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { a: { $ref: '#/$defs/missing' } } } } }, 'response_format.json_schema.schema.properties.a.$ref'],
    [{ type: 'json_schema', json_schema: { name: 'has space', schema: { type: 'object' } } }, 'response_format.json_schema.name'],
    [{ type: 'xml' }, 'response_format.type'],
  ])('an unsupported or invalid response_format is a 400 naming %#', async (format, param) => {
    const err = await client.chat.completions
      .create({ model: MODEL, messages: user('x'), response_format: format as OpenAI.ResponseFormatJSONSchema })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadRequestError);
    expect((err as BadRequestError).param).toBe(param);
  });
});

describe('tool calling', () => {
  const validateWeather = new Ajv().compile(WEATHER_TOOL.function.parameters!);
  const validateTime = new Ajv().compile(TIME_TOOL.function.parameters!);

  it("tool_choice 'required': parsed tool calls with valid arguments, finish_reason tool_calls", async () => {
    const res = await client.chat.completions.create({
      model: MODEL,
      messages: user('What is the weather in Paris?'),
      tools: [WEATHER_TOOL, TIME_TOOL],
      tool_choice: 'required',
      n: 4,
      seed: 3,
      max_tokens: 140,
    });
    for (const choice of res.choices) {
      // Parallel calls are allowed: a choice may keep calling until max_tokens cuts its last call short.
      expect(['tool_calls', 'length']).toContain(choice.finish_reason);
      const calls = choice.message.tool_calls!;
      const complete = choice.finish_reason === 'length' ? calls.slice(0, -1) : calls;
      expect(complete.length).toBeGreaterThanOrEqual(1);
      for (const call of complete) {
        if (call.type !== 'function') throw new Error('not a function call');
        expect(call.id).toMatch(/^call_/);
        const args: unknown = JSON.parse(call.function.arguments);
        if (call.function.name === 'get_weather') expect(validateWeather(args)).toBe(true);
        else expect([call.function.name, validateTime(args)]).toEqual(['get_time', true]);
      }
    }
    expect(res.choices.map((c) => c.finish_reason)).toContain('tool_calls');
  });

  it('a named tool_choice calls exactly that tool, once', async () => {
    const res = await client.chat.completions.create({
      model: MODEL,
      messages: user('Time?'),
      tools: [WEATHER_TOOL, TIME_TOOL],
      tool_choice: { type: 'function', function: { name: 'get_time' } },
      seed: 4,
      max_tokens: 100,
    });
    const calls = res.choices[0]!.message.tool_calls!;
    expect(calls).toHaveLength(1);
    expect(calls[0]!.type === 'function' && calls[0]!.function.name).toBe('get_time');
    expect(res.choices[0]!.message.content).toBeNull();
  });

  it('streamed: delta.tool_calls open with id and name, arguments arrive in fragments, the SDK folds them', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages: user('Weather in Oslo?'),
      tools: [WEATHER_TOOL],
      tool_choice: 'required',
      parallel_tool_calls: false,
      stream: true,
      seed: 8,
    });
    const deltas: OpenAI.ChatCompletionChunk.Choice.Delta.ToolCall[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      deltas.push(...(chunk.choices[0]?.delta.tool_calls ?? []));
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(finish).toBe('tool_calls');
    expect(deltas[0]).toMatchObject({ index: 0, type: 'function', function: { name: 'get_weather', arguments: '' } });
    expect(deltas[0]!.id).toMatch(/^call_/);
    expect(deltas.length).toBeGreaterThan(2);
    const args = deltas.map((d) => d.function?.arguments ?? '').join('');
    expect(validateWeather(JSON.parse(args))).toBe(true);

    // The SDK's own accumulator agrees.
    const helper = client.chat.completions.stream({
      model: MODEL,
      messages: user('Weather in Oslo?'),
      tools: [WEATHER_TOOL],
      tool_choice: 'required',
      parallel_tool_calls: false,
      seed: 8,
    });
    const final = await helper.finalChatCompletion();
    const call = final.choices[0]!.message.tool_calls![0]!;
    expect(call.type === 'function' && call.function.arguments).toBe(args);
  });

  it('a round trip: the call, the tool result, then an answer in text', async () => {
    const first = await client.chat.completions.create({
      model: MODEL,
      messages: user('Weather in Rome?'),
      tools: [WEATHER_TOOL],
      tool_choice: 'required',
      parallel_tool_calls: false,
      seed: 9,
    });
    const assistant = first.choices[0]!.message;
    const call = assistant.tool_calls![0]!;
    const history: OpenAI.ChatCompletionMessageParam[] = [
      ...user('Weather in Rome?'),
      { role: 'assistant', content: assistant.content, tool_calls: assistant.tool_calls },
      { role: 'tool', tool_call_id: call.id, content: '{"temperature": 21}' },
    ];
    const second = await client.chat.completions.create({
      model: MODEL,
      messages: history,
      tools: [WEATHER_TOOL],
      tool_choice: 'none',
      seed: 9,
      max_tokens: 20,
    });
    expect(second.choices[0]!.message.tool_calls).toBeUndefined();
    expect(second.choices[0]!.message.content!.length).toBeGreaterThan(0);
    // The same answer streamed: content deltas, no tool calls.
    const streamed = await client.chat.completions.create({ model: MODEL, messages: history, tools: [WEATHER_TOOL], tool_choice: 'none', seed: 9, max_tokens: 20, stream: true });
    let text = '';
    for await (const chunk of streamed) {
      expect(chunk.choices[0]?.delta.tool_calls).toBeUndefined();
      text += chunk.choices[0]?.delta.content ?? '';
    }
    expect(text).toBe(second.choices[0]!.message.content);
    // The model saw its call and the result: the prompt it was given (vLLM's /tokenize renders the same way).
    const tokenized = await post('/tokenize', { model: MODEL, messages: history });
    expect(tokenized.json.count).toBe(second.usage!.prompt_tokens);
    const prompt = (await post('/detokenize', { model: MODEL, tokens: tokenized.json.tokens })).json.prompt as string;
    expect(prompt).toContain(`<tool_call>\n{"name":"get_weather","arguments":${JSON.stringify(JSON.parse(call.type === 'function' ? call.function.arguments : '{}'))}}\n</tool_call>`);
    expect(prompt).toContain('<tool_response>\n{"temperature": 21}\n</tool_response>');
  });

  it.each([
    [{ tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { a: { type: 'number', minimum: 0 } } } } }] }, 'tools[0].function.parameters.properties.a.minimum'],
    [{ tools: [WEATHER_TOOL], tool_choice: { type: 'function', function: { name: 'nope' } } }, 'tool_choice.function.name'],
    [{ messages: [...user('x'), { role: 'tool', tool_call_id: 'call_missing', content: '1' }] }, 'messages[1].tool_call_id'],
    [{ tools: [WEATHER_TOOL, WEATHER_TOOL] }, 'tools[1].function.name'],
  ])('bad tool input is a 400 naming the field (%#)', async (extra, param) => {
    const err = await client.chat.completions
      .create({ model: MODEL, messages: user('x'), ...(extra as object) } as OpenAI.ChatCompletionCreateParamsNonStreaming)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadRequestError);
    expect((err as BadRequestError).param).toBe(param);
  });
});
