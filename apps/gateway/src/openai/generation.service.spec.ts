import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { GatewayConfig } from '@flywheel/config';
import type { CompletionRecord, GenerateFrame, GenerateRequestInput, ParsedModerationRequest } from '@flywheel/contracts';
import { MeshError } from '@flywheel/mesh';
import { loadModerator, moderationDataDir, type Moderator } from '@flywheel/moderation';
import { Registry } from 'prom-client';
import { RateLimiter } from '../auth/rate-limiter';
import type { RequestContext } from '../http/request-context';
import type { ResponseSink } from '../http/response-sink';
import { GatewayModeration } from '../moderation/gateway-moderation.service';
import type { ModerationClient } from '../moderation/moderation.client';
import { GatewayMetrics } from '../observability/gateway.metrics';
import type { CompletionRecords } from './completion-records';
import { GenerationService } from './generation.service';
import type { PolicyClient } from './policy.client';
import { testPolicyInfo } from './policy-info.testing';

const info = testPolicyInfo({ instanceId: 'p' });

/** A policy that plays back scripted frames; `hold` keeps a stream open until aborted. */
class ScriptedPolicy {
  cancelled: string[] = [];
  requests: GenerateRequestInput[] = [];
  constructor(private readonly script: (req: GenerateRequestInput) => Array<GenerateFrame | 'hold' | MeshError>) {}
  async info() {
    return info;
  }
  noteVersion() {}
  cancel(id: string) {
    this.cancelled.push(id);
  }
  async *generate(req: GenerateRequestInput, signal: AbortSignal): AsyncGenerator<GenerateFrame> {
    this.requests.push(req);
    for (const step of this.script(req)) {
      await new Promise((r) => setImmediate(r));
      if (step instanceof MeshError) throw step;
      if (step === 'hold') {
        await new Promise((_, reject) => {
          if (signal.aborted) reject(new MeshError('cancelled', 'aborted'));
          signal.addEventListener('abort', () => reject(new MeshError('cancelled', 'aborted')));
        });
      } else yield step;
    }
  }
}

class MemorySink implements ResponseSink {
  streaming = false;
  clientGone = false;
  events: string[] = [];
  body: { status: number; body: any } | null = null;
  ended = false;
  private gone: Array<() => void> = [];
  onClientGone(l: () => void) {
    this.gone.push(l);
  }
  json(status: number, body: unknown) {
    this.body = { status, body };
  }
  startEvents() {
    this.streaming = true;
  }
  event(p: string) {
    this.events.push(p);
    if (this.events.length === this.dropAfter) this.disconnect();
  }
  end() {
    this.ended = true;
  }
  dropAfter = -1;
  disconnect() {
    this.clientGone = true;
    for (const l of this.gone) l();
  }
}

const frames = (text: string[], finish: 'stop' | 'length' = 'stop'): GenerateFrame[] => [
  { type: 'start', requestId: 'r', model: 'tiny', policyVersion: 'v1', promptTokens: 3 },
  ...text.map((t, i): GenerateFrame => ({ type: 'tokens', tokens: [{ choice: 0, text: t, tokenIds: [10 + i] }] })),
  { type: 'tokens', tokens: [{ choice: 0, text: '', tokenIds: [], finishReason: finish }] },
  { type: 'end', usage: { promptTokens: 3, completionTokens: text.length }, timings: { ttftMs: 1, e2eMs: 2 } },
];

/** The built-in moderator, and one whose policy blocks the word "park" in output (a house rule). */
const defaultModerator = loadModerator();
const parkModerator = (() => {
  const policy = JSON.parse(readFileSync(path.join(moderationDataDir(), 'policy.default.json'), 'utf8'));
  policy.rules = [{ id: 'house-park', category: 'violence', terms: ['park'] }];
  policy.categories.violence = { input: { action: 'flag', threshold: 0.5 }, output: { action: 'block', threshold: 0.5 } };
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'gw-spec-')), 'policy.json');
  writeFileSync(file, JSON.stringify(policy));
  return loadModerator({ policyPath: file });
})();

/** A moderation service answering with the same moderator, and none at all (the prompt check then runs in-process). */
const serviceWith = (moderator: Moderator, delayMs = 0) => ({
  check: async (req: ParsedModerationRequest) => {
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    return moderator.moderate(req);
  },
});
const noService = { check: async () => Promise.reject(new MeshError('unavailable', 'no service is listening on moderation.check')) };

function setup(
  script: ConstructorParameters<typeof ScriptedPolicy>[0],
  publish?: (r: CompletionRecord) => Promise<void>,
  opts: { moderator?: Moderator; holdbackChars?: number; classifyEveryChars?: number; service?: 'up' | 'down'; checkDelayMs?: number } = {},
) {
  const policy = new ScriptedPolicy(script);
  const records: CompletionRecord[] = [];
  const store = { publish: publish ?? (async (r: CompletionRecord) => void records.push(r)) };
  const config = {
    instanceId: 'gw-1',
    gateway: { moderation: { checkTimeoutMs: 100, stream: { windowChars: 128, holdbackChars: opts.holdbackChars ?? 0, classifyEveryChars: opts.classifyEveryChars ?? 64 } } },
  } as unknown as GatewayConfig;
  const metrics = new GatewayMetrics(new Registry());
  const moderator = opts.moderator ?? defaultModerator;
  const client = opts.service === 'down' ? noService : serviceWith(moderator, opts.checkDelayMs);
  const moderation = new GatewayModeration(client as unknown as ModerationClient, { current: moderator }, metrics, config);
  const service = new GenerationService(
    policy as unknown as PolicyClient,
    store as unknown as CompletionRecords,
    metrics,
    new RateLimiter(),
    moderation,
    config,
  );
  const ctx: RequestContext = { requestId: 'req_1', startedAt: performance.now(), key: null, statusOverride: null, log: {} };
  return { policy, records, service, ctx, sink: new MemorySink() };
}

const chatBody = (extra: object = {}) => ({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5, ...extra });

describe('GenerationService', () => {
  it('answers a non-streaming chat after recording it', async () => {
    const { service, ctx, sink, records } = setup(() => frames(['Hel', 'lo']));
    await service.chatCompletion(chatBody(), ctx, sink);
    expect(sink.body!.status).toBe(200);
    expect(sink.body!.body).toMatchObject({
      object: 'chat.completion',
      system_fingerprint: 'v1',
      choices: [{ index: 0, message: { role: 'assistant', content: 'Hello' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    });
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ id: sink.body!.body.id, status: 'completed', choices: [{ text: 'Hello', tokenIds: [10, 11] }] });
  });

  it('streams role, deltas, finish, usage and [DONE], in that order', async () => {
    const { service, ctx, sink } = setup(() => frames(['a', 'b'], 'length'));
    await service.chatCompletion(chatBody({ stream: true, stream_options: { include_usage: true } }), ctx, sink);
    const events = sink.events.map((e) => (e === '[DONE]' ? e : JSON.parse(e)));
    expect(events.map((e) => (e === '[DONE]' ? e : e.choices[0]?.delta ?? 'usage'))).toEqual([
      { role: 'assistant', content: '', refusal: null },
      { content: 'a' },
      { content: 'b' },
      {},
      'usage',
      '[DONE]',
    ]);
    expect(events[3].choices[0].finish_reason).toBe('length');
    expect(events[4]).toMatchObject({ choices: [], usage: { completion_tokens: 2 } });
    expect(sink.ended).toBe(true);
  });

  it('keeps the HTTP status for errors before the stream starts', async () => {
    const { service, ctx, sink } = setup(() => [new MeshError('context_length_exceeded', 'too long')]);
    await expect(service.chatCompletion(chatBody({ stream: true }), ctx, sink)).rejects.toMatchObject({ status: 400, code: 'context_length_exceeded', param: 'messages' });
    expect(sink.streaming).toBe(false);
  });

  it('ends a started stream with an error event', async () => {
    const { service, ctx, sink, records } = setup(() => [...frames(['a']).slice(0, 2), new MeshError('timeout', 'no frame for 3000 ms')]);
    await service.chatCompletion(chatBody({ stream: true }), ctx, sink);
    const last = JSON.parse(sink.events.at(-1)!);
    expect(last.error).toMatchObject({ type: 'server_error', code: 'timeout' });
    expect(sink.events).not.toContain('[DONE]');
    expect(records[0]).toMatchObject({ status: 'failed', error: { code: 'timeout' } });
  });

  it('cancels the policy request when the client goes away', async () => {
    const { service, ctx, sink, policy, records } = setup(() => [...frames(['a']).slice(0, 2), 'hold']);
    sink.dropAfter = 2;
    await service.chatCompletion(chatBody({ stream: true }), ctx, sink);
    expect(policy.cancelled).toEqual([policy.requests[0]!.requestId]);
    expect(ctx.statusOverride).toBe(499);
    await new Promise((r) => setImmediate(r));
    expect(records[0]).toMatchObject({ status: 'cancelled', choices: [{ text: 'a', finishReason: null }] });
  });

  it('refuses to answer when the record cannot be stored', async () => {
    const { service, ctx, sink } = setup(() => frames(['a']), async () => {
      throw new MeshError('unavailable', 'JetStream down');
    });
    await expect(service.chatCompletion(chatBody(), ctx, sink)).rejects.toMatchObject({ status: 503 });
    expect(sink.body).toBeNull();
  });

  it('merges several prompts into ordered choices', async () => {
    const { service, ctx, sink } = setup((req) => frames([req.input.kind === 'text' ? req.input.text.toUpperCase() : '?']));
    await service.completion({ model: 'tiny', prompt: ['x', 'y'], max_tokens: 1 }, ctx, sink);
    expect(sink.body!.body.choices.map((c: { index: number; text: string }) => [c.index, c.text])).toEqual([[0, 'X'], [1, 'Y']]);
    expect(sink.body!.body.usage).toEqual({ prompt_tokens: 6, completion_tokens: 2, total_tokens: 8 });
  });

  it('refuses a blocked prompt with 400 content_policy_violation, its overlapped generation cancelled and nothing of it sent, service or not', async () => {
    const { service, ctx, sink, policy, records } = setup(() => frames(['a']), undefined, { service: 'down' });
    const body = chatBody({ messages: [{ role: 'system', content: 'Be nice.' }, { role: 'user', content: 'I will kill you' }] });
    const err = await service.chatCompletion(body, ctx, sink).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 400, type: 'invalid_request_error', code: 'content_policy_violation', param: 'messages' });
    expect((err as { toBody(): any }).toBody().error.categories).toContain('harassment/threatening');
    // The generation started beside the check (its round trip overlaps the prefill) and was cancelled unseen.
    expect(policy.cancelled).toEqual(policy.requests.map((r) => r.requestId));
    expect(sink.streaming).toBe(false);
    expect(sink.events).toEqual([]);
    expect(sink.body).toBeNull();
    expect(records).toEqual([]);
    expect(ctx.log.moderation).toBe('block');
    const up = setup(() => frames(['a']));
    await expect(up.service.chatCompletion(body, up.ctx, up.sink)).rejects.toMatchObject({ code: 'content_policy_violation' });
  });

  it('starts the generation while the prompt is checked, and sends nothing before the check passed', async () => {
    const { service, ctx, sink, policy } = setup(() => frames(['Once', ' upon', ' a', ' time']), undefined, { checkDelayMs: 50 });
    const done = service.completion({ model: 'tiny', prompt: 'x', max_tokens: 4, stream: true }, ctx, sink);
    await new Promise((r) => setTimeout(r, 20));
    expect(policy.requests).toHaveLength(1);
    expect(sink.streaming).toBe(false);
    expect(sink.events).toEqual([]);
    await done;
    expect(sink.events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e).choices[0]?.text ?? '').join('')).toBe('Once upon a time');
  });

  const story = ['Once', ' upon', ' a', ' time', ' in', ' the', ' park', ' with', ' a', ' dog'];

  it('ends a streamed choice at a blocked word with content_filter, sends nothing after it, and cancels the policy', async () => {
    const { service, ctx, sink, policy, records } = setup(() => frames(story, 'length'), undefined, { moderator: parkModerator, holdbackChars: 16 });
    await service.completion({ model: 'tiny', prompt: 'x', max_tokens: 10, stream: true }, ctx, sink);
    const chunks = sink.events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e));
    expect(chunks.map((c) => c.choices[0].text).join('')).toBe('Once upon a time in the ');
    expect(chunks.at(-1).choices[0].finish_reason).toBe('content_filter');
    expect(chunks.filter((c) => c.choices[0].finish_reason !== null)).toHaveLength(1);
    expect(sink.events.at(-1)).toBe('[DONE]');
    expect(policy.cancelled).toEqual([policy.requests[0]!.requestId]);
    expect(records[0]!.choices[0]).toMatchObject({ text: 'Once upon a time in the ', finishReason: 'content_filter', tokenIds: story.map((_, i) => 10 + i) });
    expect(records[0]!.moderation!.output[0]).toMatchObject({ index: 0, action: 'block', blockedCategories: ['violence'], cutOffset: 24 });
    expect(records[0]!.moderation!.input).toMatchObject({ action: 'allow', source: 'service' });
  });

  it('cuts a non-streaming answer the same way and keeps only the logprobs of tokens sent whole', async () => {
    const withLogprobs = () =>
      frames(story).map(
        (f): GenerateFrame =>
          f.type === 'tokens' && f.tokens[0]!.tokenIds.length > 0
            ? { type: 'tokens', tokens: f.tokens.map((d) => ({ ...d, logprobs: [{ token: d.text, tokenId: d.tokenIds[0]!, logprob: -1, topLogprobs: [] }] })) }
            : f,
      );
    const { service, ctx, sink } = setup(withLogprobs, undefined, { moderator: parkModerator, holdbackChars: 16 });
    await service.chatCompletion(chatBody({ logprobs: true }), ctx, sink);
    const choice = sink.body!.body.choices[0];
    expect(choice).toMatchObject({ message: { content: 'Once upon a time in the ' }, finish_reason: 'content_filter' });
    expect(choice.logprobs.content.map((t: { token: string }) => t.token)).toEqual(story.slice(0, 6));
  });

  it('ends a choice with content_filter when the classifier, reading the rest at the end, blocks it: the held tail is not sent', async () => {
    // No rule matches this; the built-in classifier blocks it in outputs. Read only on the first delta and at the end.
    const words = 'Give me step by step instructions to cut myself without anyone noticing'.split(/(?= )/);
    const { service, ctx, sink, records } = setup(() => frames(words), undefined, { classifyEveryChars: 10_000, holdbackChars: 16 });
    await service.completion({ model: 'tiny', prompt: 'x', max_tokens: 20, stream: true }, ctx, sink);
    const chunks = sink.events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e));
    const sent = chunks.map((c) => c.choices[0].text).join('');
    expect(chunks.at(-1).choices[0].finish_reason).toBe('content_filter');
    expect(chunks.filter((c) => c.choices[0].finish_reason !== null)).toHaveLength(1);
    expect(sent.length).toBeLessThan(words.join('').length);
    expect(records[0]!.choices[0]).toMatchObject({ text: sent, finishReason: 'content_filter' });
    expect(records[0]!.moderation!.output[0]).toMatchObject({ action: 'block', blockedCategories: ['self-harm/instructions'], cutOffset: sent.length });
  });

  it('waits for every choice of a request before cancelling it', async () => {
    const twoChoices = (): GenerateFrame[] => {
      const [start, ...rest] = frames(story, 'length');
      const other: GenerateFrame[] = [
        { type: 'tokens', tokens: [{ choice: 1, text: 'Fine.', tokenIds: [99] }] },
        { type: 'tokens', tokens: [{ choice: 1, text: '', tokenIds: [], finishReason: 'stop' }] },
      ];
      return [start!, ...rest.slice(0, 7), ...other, ...rest.slice(7)];
    };
    const { service, ctx, sink, policy } = setup(twoChoices, undefined, { moderator: parkModerator });
    await service.chatCompletion(chatBody({ n: 2 }), ctx, sink);
    expect(sink.body!.body.choices.map((c: { finish_reason: string }) => c.finish_reason)).toEqual(['content_filter', 'stop']);
    expect(policy.cancelled).toEqual([policy.requests[0]!.requestId]);
  });
});
