/**
 * The policy service as the gateway sees it: a real process serving the default stories260K model over
 * real NATS. Greedy output reproduces the golden ids, frames follow the contract, seeds reproduce,
 * cancellation frees the sequence at once, and bad requests get typed errors instead of crashes.
 */
import { connect, type NatsConnection } from 'nats';
import { generateFrameSchema, policyInfoSchema, SUBJECTS, tokenDeltasOf, type GenerateFrame, type GenerateRequestInput } from '@flywheel/contracts';
import { readFileSync } from 'node:fs';
import { emitEvent, MeshClient } from '@flywheel/mesh';
import { loadCheckpoint } from '@flywheel/model';
import { STORIES_GOLDEN_IDS } from '../libs/model/src/engine/testing/stories260k.fixture';
import { freePort, run, serviceEntry, stop, waitFor, type Running } from './support/processes';

jest.setTimeout(120_000);
const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

describe('policy service', () => {
  let policy: Running;
  let port: number;
  let nc: NatsConnection;
  let mesh: MeshClient;

  const generate = async (req: GenerateRequestInput): Promise<GenerateFrame[]> => {
    const frames: GenerateFrame[] = [];
    for await (const f of mesh.stream(SUBJECTS.policy.generate, req, generateFrameSchema, { firstReplyTimeoutMs: 10_000, idleTimeoutMs: 10_000 })) frames.push(f);
    return frames;
  };
  const tokenIds = (frames: GenerateFrame[], choice = 0) => tokenDeltasOf(frames).flatMap((d) => (d.choice === choice ? d.tokenIds : []));
  const metric = async (name: string) => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
    return line ? Number(line.split(' ').pop()) : NaN;
  };

  beforeAll(async () => {
    port = await freePort();
    policy = run(process.execPath, [serviceEntry('policy')], { NATS_URL, FLYWHEEL_POLICY_PORT: String(port), FLYWHEEL_INSTANCE_ID: `policy-test-${port}` });
    nc = await connect({ servers: NATS_URL });
    mesh = new MeshClient(nc);
    await waitFor(async () => ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200 ? true : undefined), 60_000, 'policy ready');
  });

  afterAll(async () => {
    await stop(policy);
    await nc?.drain();
  });

  it('reports what it serves', async () => {
    const info = await mesh.request(SUBJECTS.policy.info, {}, policyInfoSchema, { timeoutMs: 3000 });
    expect(info).toMatchObject({ model: 'stories260K', policyVersion: 'base', contextLength: 512, vocabSize: 512, dtype: 'f32', hasChatTemplate: true });
    // 5 layers x (qkv, o, gate_up, down) + the tied embedding, all f32; the metrics say the same.
    expect(info.weightTypes).toEqual({ f32: 21 });
    expect(await metric('flywheel_model_weight_matrices')).toBe(21);
    expect(await metric('flywheel_model_decode_weight_bytes')).toBeGreaterThan(900_000);
    // The KV cache in f16 by default: 5 layers x (K + V) x 4 KV heads x 8 dims x 2 bytes.
    expect(await metric('flywheel_kv_cache_bytes_per_token')).toBe(640);
  });

  it('streams the golden greedy continuation of "Once upon a time" in contract order', async () => {
    const frames = await generate({ requestId: 'golden', input: { kind: 'text', text: 'Once upon a time' }, sampling: { temperature: 0, maxTokens: 64 } });
    expect(frames[0]).toMatchObject({ type: 'start', requestId: 'golden', promptTokens: 5, policyVersion: 'base' });
    expect(tokenIds(frames)).toEqual(STORIES_GOLDEN_IDS);
    const text = tokenDeltasOf(frames).map((d) => d.text).join('');
    expect(text.startsWith(', there was a little girl named Lily.')).toBe(true);
    expect(frames.at(-2)?.type).toBe('tokens');
    expect(tokenDeltasOf(frames).at(-1)).toMatchObject({ choice: 0, finishReason: 'length' });
    expect(tokenDeltasOf(frames).filter((d) => d.finishReason !== undefined)).toHaveLength(1);
    expect(frames.at(-1)).toMatchObject({ type: 'end', usage: { promptTokens: 5, completionTokens: 64 } });
    expect(await metric('flywheel_generation_tokens_total')).toBeGreaterThanOrEqual(64);
  });

  it('reproduces sampled output with the same seed, gives n choices and logprobs', async () => {
    const req = { input: { kind: 'text' as const, text: 'Lily and her dog' }, sampling: { temperature: 1, seed: 1234, maxTokens: 24, n: 2, logprobs: true, topLogprobs: 3 } };
    const a = await generate({ requestId: 'seed-a', ...req });
    const b = await generate({ requestId: 'seed-b', ...req });
    expect(tokenIds(a, 0)).toEqual(tokenIds(b, 0));
    expect(tokenIds(a, 1)).toEqual(tokenIds(b, 1));
    expect(tokenIds(a, 0)).not.toEqual(tokenIds(a, 1));
    const firstToken = tokenDeltasOf(a).find((d) => d.tokenIds.length > 0);
    expect(firstToken?.logprobs?.[0]?.topLogprobs).toHaveLength(3);
    expect(tokenDeltasOf(a).filter((d) => d.finishReason !== undefined)).toHaveLength(2);
    // One frame per engine step carries both choices' tokens: never more frames than steps.
    const tokenFrames = a.filter((f) => f.type === 'tokens');
    expect(tokenFrames.length).toBeLessThanOrEqual(24);
    expect(tokenFrames.some((f) => f.type === 'tokens' && new Set(f.tokens.map((d) => d.choice)).size === 2)).toBe(true);
  });

  it('sends the frames of concurrent muxed streams as one NATS message per step, the same frames as unmuxed', async () => {
    const req = (i: number): GenerateRequestInput => ({
      requestId: `mux-${i}`,
      input: { kind: 'text', text: 'Once upon a time' },
      sampling: { temperature: 1, seed: 100 + i, maxTokens: 24 },
    });
    const run = async (i: number, mux: boolean) => {
      const frames: GenerateFrame[] = [];
      for await (const f of mesh.stream(SUBJECTS.policy.generate, req(i), generateFrameSchema, { firstReplyTimeoutMs: 10_000, idleTimeoutMs: 10_000, mux })) frames.push(f);
      return frames;
    };
    // Every message on a reply subject: the muxed ones are arrays of [stream, frame] entries.
    const spy = await connect({ servers: NATS_URL });
    const muxMessages: unknown[][] = [];
    spy.subscribe('_INBOX.>', { callback: (_e, m) => void (m.data[0] === 0x5b && muxMessages.push(JSON.parse(new TextDecoder().decode(m.data)) as unknown[])) });
    await spy.flush();
    const muxed = await Promise.all([0, 1, 2, 3].map((i) => run(i, true)));
    await spy.drain();
    const plain = await Promise.all([0, 1, 2, 3].map((i) => run(i, false)));
    const withoutTimings = (frames: GenerateFrame[]) => frames.map((f) => (f.type === 'end' ? { ...f, timings: null } : f));
    expect(muxed.map(withoutTimings)).toEqual(plain.map(withoutTimings));
    // Every frame came through the mux (the inbox only carried the final packets)...
    const entries = muxMessages.flat();
    expect(entries).toHaveLength(muxed.flat().length);
    // ...and the four streams shared messages: far fewer messages than frames.
    expect(muxMessages.some((m) => m.length === 4)).toBe(true);
    expect(muxMessages.length).toBeLessThan(entries.length / 2);
    // An error the engine raises still reaches a muxed caller typed, on the request's own reply subject.
    const bad = mesh.stream(SUBJECTS.policy.generate, { requestId: 'mux-oov', input: { kind: 'tokens', tokenIds: [1, 99999] } }, generateFrameSchema, {
      firstReplyTimeoutMs: 10_000,
      idleTimeoutMs: 10_000,
      mux: true,
    });
    await expect(bad.next()).rejects.toMatchObject({ code: 'invalid_payload', param: 'input.tokenIds.1' });
  });

  it('frees a cancelled sequence at the next step', async () => {
    const frames: GenerateFrame[] = [];
    const consumer = (async () => {
      for await (const f of mesh.stream(
        SUBJECTS.policy.generate,
        { requestId: 'to-cancel', input: { kind: 'text', text: 'Once' }, sampling: { temperature: 1, maxTokens: 500 } },
        generateFrameSchema,
        { firstReplyTimeoutMs: 10_000, idleTimeoutMs: 10_000 },
      )) {
        frames.push(f);
        if (frames.length === 3) emitEvent(nc, SUBJECTS.policy.cancel, { requestId: 'to-cancel' });
      }
    })();
    await consumer;
    expect(tokenDeltasOf(frames).find((d) => d.finishReason !== undefined)).toMatchObject({ choice: 0, finishReason: 'cancelled' });
    const end = frames.at(-1);
    expect(end?.type === 'end' && end.usage.completionTokens).toBeLessThan(100);
    expect(await metric('flywheel_num_requests_running')).toBe(0);
  });

  it('answers bad requests with typed errors and keeps serving', async () => {
    await expect(generate({ requestId: 'oov', input: { kind: 'tokens', tokenIds: [1, 99999] } })).rejects.toMatchObject({ code: 'invalid_payload', param: 'input.tokenIds.1' });
    await expect(generate({ requestId: 'long', input: { kind: 'tokens', tokenIds: new Array(500).fill(300) }, sampling: { maxTokens: 100 } })).rejects.toMatchObject({
      code: 'context_length_exceeded',
    });
    await expect(generate({ requestId: 'bad', input: { kind: 'text', text: 'x' }, sampling: { temperature: 9 } } as never)).rejects.toMatchObject({
      code: 'invalid_payload',
      param: 'sampling.temperature',
    });
    const ok = await generate({ requestId: 'after', input: { kind: 'text', text: 'Once upon a time' }, sampling: { temperature: 0, maxTokens: 4 } });
    expect(tokenIds(ok)).toEqual(STORIES_GOLDEN_IDS.slice(0, 4));
  });
});

describe('flywheel generate (CLI)', () => {
  it('prints the greedy continuation and nothing else on stdout', async () => {
    const r = run(process.execPath, ['tools/cli/flywheel.js', 'generate', '--model', 'models/stories260K', '--prompt', 'Once upon a time', '--max-tokens', '30'], {});
    expect(await r.exited).toBe(0);
    expect(r.output()).toMatch(/^, there was a little girl named Lily\. She loved to play outside in the park\./);
  });

  // As its own types (auto), and as `--dtype q4_k_m`, whose mix gives every tensor the type it already has.
  it.each([[[]], [['--dtype', 'q4_k_m']]])("serves a Q4_K_M GGUF (%j) and prints llama.cpp's greedy continuation of it", async (dtype: string[]) => {
    // tiny-q4_k_m.gguf is llama.cpp's llama-quantize output; the ids are llama.cpp's own greedy run of it.
    const llamacpp = JSON.parse(readFileSync('test/fixtures/quant/greedy-llamacpp.json', 'utf8'))['tiny-q4_k_m.gguf'][0];
    const r = run(process.execPath, ['tools/cli/flywheel.js', 'generate', '--model', 'test/fixtures/quant/tiny-q4_k_m.gguf', '--prompt', 'Once upon a time', '--max-tokens', '32', ...dtype], {});
    expect(await r.exited).toBe(0);
    const { tokenizer } = await loadCheckpoint('test/fixtures/quant/tiny-q4_k_m.gguf');
    expect(r.output()).toBe(`${tokenizer.decode(llamacpp.ids, { skipSpecialTokens: true })}\n`);
  });

  it('fails with one clear line for a missing model', async () => {
    const r = run(process.execPath, ['tools/cli/flywheel.js', 'generate', '--model', '/nonexistent', '--prompt', 'x'], {});
    expect(await r.exited).toBe(1);
    expect(r.output().trim()).toMatch(/^flywheel: \/nonexistent: checkpoint not found/);
  });
});
