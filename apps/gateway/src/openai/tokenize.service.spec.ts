/** /tokenize and /detokenize bodies → policy payloads: vLLM's defaults, model and vocabulary checks, 400s naming the field. */
import { detokenizePayloadOf, parseDetokenizeBody, parseTokenizeBody, tokenizePayloadOf } from './tokenize.service';
import { testPolicyInfo } from './policy-info.testing';

const info = testPolicyInfo();

describe('tokenize request mapping', () => {
  it('maps a prompt with special tokens by default', () => {
    expect(tokenizePayloadOf(parseTokenizeBody({ prompt: 'hi' }), info)).toEqual({ kind: 'text', text: 'hi', addSpecialTokens: true });
    expect(tokenizePayloadOf(parseTokenizeBody({ model: 'tiny', prompt: 'hi', add_special_tokens: false }), info)).toMatchObject({ addSpecialTokens: false });
  });

  it('maps chat messages with the generation prompt and template kwargs, without extra special tokens', () => {
    const body = { messages: [{ role: 'developer', content: 'x' }], chat_template_kwargs: { enable_thinking: true } };
    expect(tokenizePayloadOf(parseTokenizeBody(body), info)).toEqual({
      kind: 'chat',
      messages: [{ role: 'system', content: 'x' }],
      addGenerationPrompt: true,
      addSpecialTokens: false,
      templateKwargs: { enable_thinking: true },
    });
  });

  it.each([
    [{}, 400, 'prompt'],
    [{ prompt: 'a', extra: 1 }, 400, 'extra'],
    [{ prompt: 3 }, 400, 'prompt'],
  ])('refuses the body %j with %i naming %s', (body, status, param) => {
    expect(() => parseTokenizeBody(body)).toThrow(expect.objectContaining({ status, param }));
  });

  it('refuses another model and chat without a template', () => {
    expect(() => tokenizePayloadOf(parseTokenizeBody({ model: 'big', prompt: 'a' }), info)).toThrow(expect.objectContaining({ status: 404, param: 'model' }));
    const chat = parseTokenizeBody({ messages: [{ role: 'user', content: 'a' }] });
    expect(() => tokenizePayloadOf(chat, { ...info, hasChatTemplate: false })).toThrow(expect.objectContaining({ status: 400, code: 'no_chat_template' }));
  });
});

describe('detokenize request mapping', () => {
  it('passes ids inside the vocabulary and names the first one outside it', () => {
    expect(detokenizePayloadOf(parseDetokenizeBody({ tokens: [1, 511] }), info)).toEqual({ tokenIds: [1, 511] });
    expect(() => detokenizePayloadOf(parseDetokenizeBody({ tokens: [1, 512] }), info)).toThrow(expect.objectContaining({ status: 400, param: 'tokens[1]' }));
    expect(() => parseDetokenizeBody({ tokens: [-1] })).toThrow(expect.objectContaining({ status: 400, param: 'tokens[0]' }));
  });
});
