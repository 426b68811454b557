/**
 * Tool calling learned, not forced: our SFT trains models/stories260K on the committed tool-calling set
 * (test/fixtures/sft/tool-calls.jsonl, TRL's `tools` column; made by make_tool_calls.py), then the real gateway and
 * policy serve the tuned checkpoint with `tool_choice: "auto"`. The model writes `<tool_call>` by itself for a weather
 * question (the grammar only keeps the call it opened valid), the gateway parses it from the real output, whole and
 * streamed, with the openai SDK; a story request stays text.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { runSft } from '@flywheel/train';
import { startGatewayMesh, startPrivateNats, type GatewayMesh, type PrivateNats } from './gateway.support';

jest.setTimeout(300_000);

const KEY = 'sk-tool-calling-sft-0001';
const DATA = path.resolve(__dirname, 'fixtures', 'sft', 'tool-calls.jsonl');
const TOOLS: OpenAI.ChatCompletionTool[] = [
  {
    type: 'function',
    function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 } }, required: ['city'], additionalProperties: false } },
  },
];

let scratch: string;
let nats: PrivateNats;
let mesh: GatewayMesh;
let client: OpenAI;

beforeAll(async () => {
  scratch = mkdtempSync(path.join(tmpdir(), 'flywheel-tool-sft-'));
  const out = path.join(scratch, 'tuned');
  await runSft({
    modelDir: path.resolve(__dirname, '..', 'models', 'stories260K'),
    data: { text: readFileSync(DATA, 'utf8'), source: DATA },
    outDir: out,
    steps: 150,
    lr: 3e-3,
    batchSize: 8,
    seqLen: 320,
    heldout: 0,
    seed: 1,
  });
  nats = await startPrivateNats();
  mesh = await startGatewayMesh(nats.url, KEY, { FLYWHEEL_API_KEYS: KEY, FLYWHEEL_STATE_DIR: scratch, FLYWHEEL_MODEL: out });
  client = new OpenAI({ apiKey: KEY, baseURL: `${mesh.gatewayUrl}/v1`, maxRetries: 0 });
});

afterAll(async () => {
  await mesh?.stop();
  await nats?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const ask = (content: string) => ({ model: 'tuned', messages: [{ role: 'user' as const, content }], tools: TOOLS, temperature: 0, max_tokens: 150 });

it('a weather question: the tuned model calls get_weather by itself, parsed from its output', async () => {
  for (const city of ['Paris', 'Oslo', 'Tokyo']) {
    const res = await client.chat.completions.create(ask(`What is the weather in ${city}?`));
    const choice = res.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    const call = choice.message.tool_calls![0]!;
    expect(call.type === 'function' && call.function.name).toBe('get_weather');
    // The cities of the training set: the tiny model learned them (it does not generalise to new ones).
    expect(JSON.parse(call.type === 'function' ? call.function.arguments : '{}')).toEqual({ city });
    expect(choice.message.content).toBeNull();
  }
});

it('streamed: the same call arrives as delta.tool_calls fragments', async () => {
  const whole = await client.chat.completions.create(ask('Is it raining in Rome?'));
  const stream = await client.chat.completions.create({ ...ask('Is it raining in Rome?'), stream: true });
  let args = '';
  let name = '';
  let finish: string | null = null;
  let content = '';
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta;
    for (const d of delta?.tool_calls ?? []) {
      name += d.function?.name ?? '';
      args += d.function?.arguments ?? '';
    }
    content += delta?.content ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  const call = whole.choices[0]!.message.tool_calls![0]!;
  expect(finish).toBe('tool_calls');
  expect(content).toBe('');
  expect(name).toBe('get_weather');
  expect(args).toBe(call.type === 'function' ? call.function.arguments : '');
});

it('a story request stays text: no tool call', async () => {
  const res = await client.chat.completions.create(ask('Tell me a story about a cat.'));
  expect(res.choices[0]!.message.tool_calls).toBeUndefined();
  expect(res.choices[0]!.message.content).toMatch(/cat/);
});
