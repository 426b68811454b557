// ChunkWriter: a streamed chunk is the same JSON, byte for byte, as the whole chunk object serialised, for both
// endpoints, with and without include_usage, and follows a start frame that names another model or version.
import { loadModerator, StreamModerator } from '@flywheel/moderation';
import { OutputGate } from '../moderation/output-gate';
import { parseChatCompletionBody, parseCompletionBody, planChatCompletion, planCompletion, type GenerationPlan } from './openai-request.mapping';
import { ChunkWriter, CompletionState } from './openai-response.mapping';
import { testPolicyInfo } from './policy-info.testing';

const info = testPolicyInfo({ policyVersion: 'v7' });
const moderator = loadModerator();
const stateOf = (plan: GenerationPlan) => new CompletionState(plan, { input: null, gate: () => new OutputGate(new StreamModerator(moderator)) });
const step = (text: string) => ({ text, logprobs: [], blocked: false });

describe('ChunkWriter', () => {
  it.each([false, true])('writes chat chunks as JSON.stringify of the whole chunk (include_usage %s)', (includeUsage) => {
    const body = parseChatCompletionBody({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: includeUsage } });
    const state = stateOf(planChatCompletion(body, info, { id: 'chatcmpl-1', created: 5 }));
    state.onStart(0, { type: 'start', requestId: 'r', model: 'tiny', policyVersion: 'v7', promptTokens: 3 });
    const writer = new ChunkWriter(state);
    const usage = includeUsage ? { usage: null } : {};
    const whole = (choice: object) => JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 5, model: 'tiny', system_fingerprint: 'v7', choices: [choice], ...usage });
    const choice = state.choices[0]!;
    expect(writer.opening(choice)).toBe(whole({ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }));
    expect(writer.content(choice, step('Once "upon"\n'))).toBe(whole({ index: 0, delta: { content: 'Once "upon"\n' }, logprobs: null, finish_reason: null }));

    // A later start frame (another prompt's sub-stream, a swapped version) names what the next chunks carry.
    state.onStart(0, { type: 'start', requestId: 'r2', model: 'tiny-2', policyVersion: 'v8', promptTokens: 3 });
    expect(JSON.parse(writer.content(choice, step(' a'))!)).toMatchObject({ model: 'tiny-2', system_fingerprint: 'v8' });
  });

  it('writes completion chunks the same way', () => {
    const body = parseCompletionBody({ model: 'tiny', prompt: 'hi', stream: true });
    const state = stateOf(planCompletion(body, info, { id: 'cmpl-1', created: 9 }));
    state.onStart(0, { type: 'start', requestId: 'r', model: 'tiny', policyVersion: 'v7', promptTokens: 2 });
    const writer = new ChunkWriter(state);
    const chunk = writer.content(state.choices[0]!, step(' time'));
    expect(chunk).toBe(JSON.stringify({ id: 'cmpl-1', object: 'text_completion', created: 9, model: 'tiny', system_fingerprint: 'v7', choices: [{ index: 0, text: ' time', logprobs: null, finish_reason: null }] }));
  });
});
