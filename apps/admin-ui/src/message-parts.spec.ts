import { messageParts } from './message-parts';

describe('message parts for reviewers', () => {
  it('splits text, tool calls, tool results and thinking', () => {
    expect(
      messageParts('<think>hmm</think>\nSure.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>\n<tool_response>\n{"t": 21}\n</tool_response>'),
    ).toEqual([
      { kind: 'thinking', text: 'hmm' },
      { kind: 'text', text: 'Sure.' },
      { kind: 'tool_call', name: 'get_weather', arguments: '{\n  "city": "Rome"\n}', raw: '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>' },
      { kind: 'tool_result', text: '{"t": 21}' },
    ]);
  });

  it('plain text stays one part; a call that is not JSON stays text', () => {
    expect(messageParts('Once upon a time')).toEqual([{ kind: 'text', text: 'Once upon a time' }]);
    expect(messageParts('<tool_call>nope</tool_call>')).toEqual([{ kind: 'text', text: '<tool_call>nope</tool_call>' }]);
    expect(messageParts('<think>cut short')).toEqual([{ kind: 'thinking', text: 'cut short' }]);
  });
});
