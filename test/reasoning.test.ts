/**
 * reasoning_content through the real gateway and policy: a copy of stories260K whose chat template opens a think
 * block in the prompt (DeepSeek-R1 style), so everything the model writes is thinking until `</think>` (which the
 * tiny model never writes). Checks the policy's detection, the split in whole and streamed answers, and that
 * FLYWHEEL_REASONING_PARSER=none leaves the text in content. The split itself is unit-tested
 * (apps/gateway/src/openai/reasoning.splitter.spec.ts).
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { startGatewayMesh, startPrivateNats, type GatewayMesh, type PrivateNats } from './gateway.support';

jest.setTimeout(180_000);

const KEY = 'sk-reasoning-test-000001';
const THINK_TEMPLATE = "{{ bos_token }}{% for m in messages %}{{ '<|' + m.role + '|>\\n' + m.content + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n<think>\\n' }}{% endif %}";

let nats: PrivateNats;
let scratch: string;
let modelDir: string;

beforeAll(async () => {
  scratch = mkdtempSync(path.join(tmpdir(), 'flywheel-reasoning-'));
  modelDir = path.join(scratch, 'stories-think');
  cpSync(path.resolve(__dirname, '..', 'models', 'stories260K'), modelDir, { recursive: true });
  const configFile = path.join(modelDir, 'tokenizer_config.json');
  const config = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  writeFileSync(configFile, JSON.stringify({ ...config, chat_template: THINK_TEMPLATE }));
  nats = await startPrivateNats();
});

afterAll(async () => {
  await nats?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

async function withMesh<T>(env: Record<string, string>, body: (client: OpenAI) => Promise<T>): Promise<T> {
  const mesh: GatewayMesh = await startGatewayMesh(nats.url, KEY, { FLYWHEEL_API_KEYS: KEY, FLYWHEEL_STATE_DIR: scratch, FLYWHEEL_MODEL: modelDir, ...env });
  try {
    return await body(new OpenAI({ apiKey: KEY, baseURL: `${mesh.gatewayUrl}/v1`, maxRetries: 0 }));
  } finally {
    await mesh.stop();
  }
}

const ask = { model: 'stories-think', messages: [{ role: 'user' as const, content: 'Think.' }], max_tokens: 24, temperature: 0 };

it('a template that opens <think> makes the output reasoning_content, whole and streamed', async () => {
  await withMesh({}, async (client) => {
    const res = await client.chat.completions.create(ask);
    const message = res.choices[0]!.message as OpenAI.ChatCompletionMessage & { reasoning_content?: string | null };
    expect(message.reasoning_content!.length).toBeGreaterThan(10);
    expect(message.content).toBe('');

    const stream = await client.chat.completions.create({ ...ask, stream: true });
    let reasoning = '';
    let content = '';
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta as { content?: string; reasoning_content?: string } | undefined;
      reasoning += delta?.reasoning_content ?? '';
      content += delta?.content ?? '';
    }
    expect(reasoning).toBe(message.reasoning_content);
    expect(content).toBe('');
  });
});

it('FLYWHEEL_REASONING_PARSER=none leaves the same text in content', async () => {
  await withMesh({ FLYWHEEL_REASONING_PARSER: 'none' }, async (client) => {
    const res = await client.chat.completions.create(ask);
    const message = res.choices[0]!.message as OpenAI.ChatCompletionMessage & { reasoning_content?: string | null };
    expect(message.reasoning_content).toBeUndefined();
    expect(message.content!.length).toBeGreaterThan(10);
  });
});
