/** The policy's request mapping: vLLM's sampling extensions onto the engine request, and tokenize/detokenize payloads. */
import { generateRequestSchema, tokenizeRequestPayloadSchema } from '@flywheel/contracts';
import { MeshError } from '@flywheel/mesh';
import { detokenizePayload, promptTokenIds, tokenizePayload, toEngineRequest, type ChatRendering, type PromptTokenizer } from './generate-request.mapper';

const RENDER: ChatRendering = { hasChatTemplate: true, toolCallFormat: 'hermes', templateHandlesTools: false, reasoning: null };

/** One id per character (+1), BOS = 0; the chat template writes `[role]content` and the kwargs it was given. */
const tokenizer: PromptTokenizer = {
  vocabSize: 300,
  encode: (text, opts) => [...(opts?.addSpecialTokens === false ? [] : [0]), ...Array.from(text, (c) => c.charCodeAt(0) + 1)],
  renderChat: (messages, opts) =>
    messages.map((m) => `[${m.role}]${m.content}`).join('') + (opts?.addGenerationPrompt ? '>' : '') + JSON.stringify(opts?.variables ?? {}),
  applyChatTemplate(messages, opts) {
    return this.encode(this.renderChat(messages, opts), { addSpecialTokens: false });
  },
  decode: (ids) => ids.map((id) => (id === 0 ? '<s>' : String.fromCharCode(id - 1))).join(''),
};

const wire = (sampling: object) => generateRequestSchema.parse({ requestId: 'r', input: { kind: 'tokens', tokenIds: [1] }, sampling });

describe('toEngineRequest', () => {
  it('applies vLLM defaults when the extensions are absent', () => {
    const r = toEngineRequest(wire({}), [1], 300);
    expect(r).toMatchObject({ stopTokenIds: [], ignoreEos: false, minTokens: 0, skipSpecialTokens: true });
    expect(r.sampling).toMatchObject({ minP: 0, repetitionPenalty: 1 });
  });

  it('maps every extension', () => {
    const r = toEngineRequest(wire({ minP: 0.2, repetitionPenalty: 1.4, stopTokenIds: [5], ignoreEos: true, minTokens: 2, maxTokens: 9, skipSpecialTokens: false }), [1], 300);
    expect(r).toMatchObject({ stopTokenIds: [5], ignoreEos: true, minTokens: 2, skipSpecialTokens: false, maxTokens: 9 });
    expect(r.sampling).toMatchObject({ minP: 0.2, repetitionPenalty: 1.4 });
  });

  it('refuses stop ids outside the vocabulary and min_tokens over max_tokens', () => {
    expect(() => toEngineRequest(wire({ stopTokenIds: [300] }), [1], 300)).toThrow(MeshError);
    expect(() => toEngineRequest(wire({ minTokens: 5, maxTokens: 4 }), [1], 300)).toThrow(expect.objectContaining({ param: 'min_tokens' }));
  });

  it("turns a template's raise_exception into a clear invalid_payload on messages (Gemma: no system role)", () => {
    const refusing: PromptTokenizer = {
      ...tokenizer,
      applyChatTemplate: () => {
        throw new Error('System role not supported');
      },
    };
    expect(() => promptTokenIds({ kind: 'chat', messages: [{ role: 'system', content: 'a' }] }, refusing, RENDER)).toThrow(
      expect.objectContaining({ code: 'invalid_payload', param: 'messages', message: "the model's chat template refused these messages: System role not supported" }),
    );
  });

  it('renders chat with the request template kwargs', () => {
    const ids = promptTokenIds({ kind: 'chat', messages: [{ role: 'user', content: 'a' }], templateKwargs: { enable_thinking: false } }, tokenizer, RENDER);
    expect(tokenizer.decode(ids)).toBe('[user]a>{"enable_thinking":false}');
  });
});

describe('tokenize / detokenize payloads', () => {
  it('tokenizes text with BOS by default and chat like a generation prompt', () => {
    expect(tokenizePayload(tokenizeRequestPayloadSchema.parse({ kind: 'text', text: 'ab' }), tokenizer, RENDER)).toEqual([0, 98, 99]);
    const messages = [{ role: 'user' as const, content: 'a' }];
    const chat = tokenizeRequestPayloadSchema.parse({ kind: 'chat', messages });
    expect(tokenizePayload(chat, tokenizer, RENDER)).toEqual(promptTokenIds({ kind: 'chat', messages }, tokenizer, RENDER));
    expect(() => tokenizePayload(chat, tokenizer, { ...RENDER, hasChatTemplate: false })).toThrow(MeshError);
  });

  it('detokenizes with special tokens and names an id outside the vocabulary', () => {
    expect(detokenizePayload({ tokenIds: [0, 98] }, tokenizer)).toBe('<s>a');
    expect(() => detokenizePayload({ tokenIds: [1, 300] }, tokenizer)).toThrow(expect.objectContaining({ param: 'tokens[1]' }));
  });
});
