import { parseChatCompletionBody, parseCompletionBody, planChatCompletion, planCompletion } from './openai-request.mapping';
import { testPolicyInfo } from './policy-info.testing';

const info = testPolicyInfo({ policyVersion: 'v7', loadedAt: 1_700_000_000 });
const ids = { id: 'chatcmpl-x', created: 1 };
const chat = (extra: object) => planChatCompletion(parseChatCompletionBody({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], ...extra }), info, ids);
const completion = (extra: object) => planCompletion(parseCompletionBody({ model: 'tiny', prompt: 'hi', ...extra }), { ...info }, { id: 'cmpl-x', created: 1 });

describe('chat request mapping', () => {
  it('maps OpenAI sampling parameters onto one policy request', () => {
    const plan = chat({
      n: 2,
      stop: 'END',
      max_completion_tokens: 30,
      max_tokens: 99,
      temperature: 0.5,
      top_p: 0.9,
      seed: 3,
      presence_penalty: 0.1,
      frequency_penalty: -0.2,
      logit_bias: { '007': 5 },
      logprobs: true,
      top_logprobs: 4,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(plan.requests).toEqual([
      {
        requestId: 'chatcmpl-x',
        input: { kind: 'chat', messages: [{ role: 'user', content: 'hi' }] },
        echo: false,
        sampling: {
          temperature: 0.5, topP: 0.9, topK: 0, seed: 3, maxTokens: 30, stop: ['END'], presencePenalty: 0.1,
          frequencyPenalty: -0.2, logitBias: { '7': 5 }, logprobs: true, topLogprobs: 4, n: 2,
        },
      },
    ]);
    expect(plan).toMatchObject({ stream: true, includeUsage: true, n: 2, logprobs: 'chat', model: 'tiny' });
  });

  it('joins text parts, maps developer to system, treats top_p 0 as greedy', () => {
    const plan = chat({
      messages: [
        { role: 'developer', content: 'be brief' },
        { role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] },
      ],
      top_p: 0,
    });
    expect(plan.messages).toEqual([{ role: 'system', content: 'be brief' }, { role: 'user', content: 'a\nb' }]);
    expect(plan.requests[0]!.sampling).toMatchObject({ temperature: 0, topP: 1 });
  });

  it.each([
    [{ model: 'other' }, 404, 'model'],
    [{ tools: [{}] }, 400, 'tools[0].type'],
    [{ tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { a: { type: 'number', multipleOf: 2 } } } } }] }, 400, 'tools[0].function.parameters.properties.a.multipleOf'],
    [{ tools: [{ type: 'function', function: { name: 'bad name' } }] }, 400, 'tools[0].function.name'],
    [{ tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: { type: 'function', function: { name: 'g' } } }, 400, 'tool_choice.function.name'],
    [{ tool_choice: 'required' }, 400, 'tool_choice'],
    [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { a: { not: {} } } } } } }, 400, 'response_format.json_schema.schema.properties.a.not'],
    [{ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'strnig' } } } }, 400, 'response_format.json_schema.schema.type'],
    [{ response_format: { type: 'json_object' }, tools: [{ type: 'function', function: { name: 'f' } }] }, 400, 'response_format'],
    [{ messages: [{ role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{nope' } }] }] }, 400, 'messages[0].tool_calls[0].function.arguments'],
    [{ tool_choice: 'required' }, 400, 'tool_choice'],
    [{ functions: [{}] }, 400, 'functions'],
    [{ response_format: { type: 'json_schema' } }, 400, 'response_format.json_schema'],
    [{ top_logprobs: 2 }, 400, 'top_logprobs'],
    [{ stream_options: { include_usage: true } }, 400, 'stream_options'],
    [{ logit_bias: { '512': 1 } }, 400, 'logit_bias'],
    [{ max_tokens: 512 }, 400, 'max_tokens'],
    [{ messages: [{ role: 'tool', content: 'x', tool_call_id: '1' }] }, 400, 'messages[0].tool_call_id'],
    [{ messages: [{ role: 'assistant', content: null }] }, 400, 'messages[0].content'],
  ])('refuses %j with %i naming %s', (extra, status, param) => {
    expect(() => chat(extra)).toThrow(expect.objectContaining({ status, param }));
  });

  it('accepts tool_choice none and empty tools, and ignores metadata/store', () => {
    expect(() => chat({ tool_choice: 'none', tools: [], metadata: { a: 'b' }, store: false, response_format: { type: 'text' } })).not.toThrow();
  });

  it('refuses chat when the model has no chat template', () => {
    const body = parseChatCompletionBody({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }] });
    expect(() => planChatCompletion(body, { ...info, hasChatTemplate: false }, ids)).toThrow(expect.objectContaining({ code: 'no_chat_template' }));
  });
});

describe('completions request mapping', () => {
  it('sends one policy request per prompt, defaults max_tokens to 16, and asks for echo', () => {
    const plan = completion({ prompt: ['a', 'b'], n: 2, echo: true });
    expect(plan.requests.map((r) => [r.requestId, r.input, r.echo, r.sampling?.maxTokens])).toEqual([
      ['cmpl-x-0', { kind: 'text', text: 'a' }, true, 16],
      ['cmpl-x-1', { kind: 'text', text: 'b' }, true, 16],
    ]);
    expect(plan.prompts).toEqual(['a', 'b']);
  });

  it('takes token-id prompts, one or many', () => {
    expect(completion({ prompt: [1, 2, 3] }).requests[0]!.input).toEqual({ kind: 'tokens', tokenIds: [1, 2, 3] });
    expect(completion({ prompt: [[1], [2]] }).requests).toHaveLength(2);
    expect(() => completion({ prompt: [1, 9999] })).toThrow(expect.objectContaining({ param: 'prompt' }));
  });

  it('maps legacy logprobs to top alternatives', () => {
    expect(completion({ logprobs: 3 }).requests[0]!.sampling).toMatchObject({ logprobs: true, topLogprobs: 3 });
    expect(completion({ logprobs: 0 }).logprobs).toBe('completions');
  });

  it.each([
    [{ suffix: 'x' }, 'suffix'],
    [{ best_of: 3 }, 'best_of'],
    [{ echo: true, logprobs: 1 }, 'echo'],
    [{ prompt: Array.from({ length: 65 }, () => 'p'), n: 2 }, 'prompt'],
  ])('refuses %j naming %s', (extra, param) => {
    expect(() => completion(extra)).toThrow(expect.objectContaining({ status: 400, param }));
  });
});

describe("vLLM's sampling extensions", () => {
  it('maps each onto the policy request, in both endpoints', () => {
    const extensions = { min_p: 0.1, repetition_penalty: 1.3, stop_token_ids: [2, 7], ignore_eos: true, min_tokens: 3, skip_special_tokens: false };
    const sampling = { minP: 0.1, repetitionPenalty: 1.3, stopTokenIds: [2, 7], ignoreEos: true, minTokens: 3, skipSpecialTokens: false };
    expect(chat(extensions).requests[0]!.sampling).toMatchObject(sampling);
    expect(completion(extensions).requests[0]!.sampling).toMatchObject(sampling);
  });

  it('leaves them out when not sent (the policy applies vLLM defaults)', () => {
    const sent = completion({}).requests[0]!.sampling!;
    for (const key of ['minP', 'repetitionPenalty', 'stopTokenIds', 'ignoreEos', 'minTokens', 'skipSpecialTokens']) expect(sent).not.toHaveProperty(key);
  });

  it('passes chat_template_kwargs to the chat template render (chat only)', () => {
    expect(chat({ chat_template_kwargs: { enable_thinking: false } }).requests[0]!.input).toEqual({
      kind: 'chat',
      messages: [{ role: 'user', content: 'hi' }],
      templateKwargs: { enable_thinking: false },
    });
    expect(() => completion({ chat_template_kwargs: { enable_thinking: false } })).toThrow(expect.objectContaining({ status: 400, param: 'chat_template_kwargs' }));
  });

  it.each([
    [{ min_p: -0.1 }, 'min_p'],
    [{ min_p: 1.5 }, 'min_p'],
    [{ min_p: 'high' }, 'min_p'],
    [{ repetition_penalty: 0 }, 'repetition_penalty'],
    [{ repetition_penalty: -1 }, 'repetition_penalty'],
    [{ stop_token_ids: [-1] }, 'stop_token_ids[0]'],
    [{ stop_token_ids: [1, 512] }, 'stop_token_ids[1]'],
    [{ stop_token_ids: 2 }, 'stop_token_ids'],
    [{ ignore_eos: 'yes' }, 'ignore_eos'],
    [{ min_tokens: -1 }, 'min_tokens'],
    [{ min_tokens: 1.5 }, 'min_tokens'],
    [{ min_tokens: 10, max_tokens: 5 }, 'min_tokens'],
    [{ skip_special_tokens: 1 }, 'skip_special_tokens'],
    [{ chat_template_kwargs: 'x' }, 'chat_template_kwargs'],
    [{ best_of_n: 2 }, 'best_of_n'],
  ])('refuses %j with 400 naming %s', (extra, param) => {
    expect(() => chat(extra)).toThrow(expect.objectContaining({ status: 400, type: 'invalid_request_error', param }));
  });

  it('refuses min_tokens over the completions default max_tokens of 16', () => {
    expect(() => completion({ min_tokens: 17 })).toThrow(expect.objectContaining({ status: 400, param: 'min_tokens' }));
    expect(() => completion({ min_tokens: 17, max_tokens: 20 })).not.toThrow();
  });
});
