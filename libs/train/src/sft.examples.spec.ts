/** SFT examples with TRL's tools column: the prompt the model trains on is the prompt the policy serves. */
import { loadCheckpoint, templateChat, type Checkpoint } from '@flywheel/model';
import { committedModelDir } from '../../model/src/loading/model-files.testing';
import { buildSftExample } from './sft.examples';

// Real checkpoint, native engine, many sampled outputs: seconds alone, more on a loaded CI box.
jest.setTimeout(60_000);

const TOOL = { type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } };

describe('SFT examples with tools', () => {
  let ck: Checkpoint;
  beforeAll(async () => {
    ck = await loadCheckpoint(committedModelDir());
  });

  it.each([
    ['OpenAI-shaped', TOOL],
    ['bare function', TOOL.function],
  ])('the prompt tokens (%s) equal the policy’s rendering of the same chat; only the answer is a target', (_name, tool) => {
    const user = { role: 'user' as const, content: 'Weather in Rome?' };
    const answer = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>';
    const ex = buildSftExample(ck, [user, { role: 'assistant', content: answer }], [tool]);
    const chat = templateChat([user], [TOOL], { format: 'hermes', templateHandlesTools: false });
    const served = ck.tokenizer.applyChatTemplate(chat.messages, { addGenerationPrompt: true, variables: chat.variables });
    expect(ex.ids.slice(0, served.length)).toEqual(served);
    expect(ck.tokenizer.decode(served)).toContain('<tools>\n{"name":"get_weather"');
    expect(ex.assistant.slice(0, served.length).some(Boolean)).toBe(false);
    expect(ex.assistant.slice(served.length).every(Boolean)).toBe(true);
    expect(ck.tokenizer.decode(ex.ids.slice(served.length))).toContain(answer);
  });

  it('without tools the example is the plain chat', () => {
    const messages = [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello' },
    ];
    const ex = buildSftExample(ck, messages);
    expect(ex.ids.slice(0, -1)).toEqual(ck.tokenizer.applyChatTemplate(messages));
  });
});
