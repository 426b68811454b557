import type { ChatToolCallDelta, ToolCallFormat } from '@flywheel/contracts';
import { parseToolCalls, ToolCallStream } from './tool-calls.parser';

const ids = () => {
  let i = 0;
  return () => `call_${i++}`;
};

/** Streams `text` in pieces of `size` characters and folds the deltas as the openai SDK does. */
function streamed(text: string, format: ToolCallFormat, size: number) {
  const stream = new ToolCallStream(format, ids());
  const steps = [];
  for (let i = 0; i < text.length; i += size) steps.push(stream.push(text.slice(i, i + size)));
  steps.push(stream.end());
  const deltas: ChatToolCallDelta[] = steps.flatMap((s) => s.deltas);
  const calls: Array<{ id: string; name: string; arguments: string }> = [];
  for (const d of deltas) {
    if (d.id !== undefined) calls[d.index] = { id: d.id, name: d.function?.name ?? '', arguments: d.function?.arguments ?? '' };
    else calls[d.index]!.arguments += d.function?.arguments ?? '';
  }
  return { content: steps.map((s) => s.content).join(''), calls, deltas };
}

describe('tool call parsing', () => {
  const hermes = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris, \\"FR\\"", "days": [1, {"x": "}"}]}}\n</tool_call>\n<tool_call>\n{"name": "get_time", "arguments": {}}\n</tool_call>';

  it('Hermes: content, then two calls with their JSON arguments', () => {
    const parsed = parseToolCalls(hermes, 'hermes', ids());
    expect(parsed.content).toBe('Let me check.');
    expect(parsed.toolCalls).toEqual([
      { id: 'call_0', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris, \\"FR\\"", "days": [1, {"x": "}"}]}' } },
      { id: 'call_1', type: 'function', function: { name: 'get_time', arguments: '{}' } },
    ]);
    expect(JSON.parse(parsed.toolCalls[0]!.function.arguments)).toEqual({ city: 'Paris, "FR"', days: [1, { x: '}' }] });
  });

  it.each([1, 2, 3, 7, 1000])('Hermes streamed %i characters at a time folds to the same calls, arguments in fragments', (size) => {
    const whole = parseToolCalls(hermes, 'hermes', ids());
    const s = streamed(hermes, 'hermes', size);
    expect(s.content).toBe('Let me check.');
    expect(s.calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.arguments } }))).toEqual(whole.toolCalls);
    // The first delta of a call names it with empty arguments; argument text follows in later deltas.
    expect(s.deltas[0]).toEqual({ index: 0, id: 'call_0', type: 'function', function: { name: 'get_weather', arguments: '' } });
    if (size < 10) expect(s.deltas.filter((d) => d.index === 0).length).toBeGreaterThan(3);
  });

  it('Hermes: no call is plain content; a broken call is given back as text; a tag split across pushes is held', () => {
    expect(parseToolCalls('just words < and <tool', 'hermes')).toEqual({ content: 'just words < and <tool', toolCalls: [] });
    expect(parseToolCalls('<tool_call>not json</tool_call>', 'hermes').content).toBe('<tool_call>not json</tool_call>');
    const stream = new ToolCallStream('hermes', ids());
    expect(stream.push('hi <tool_').content).toBe('hi');
    expect(stream.push('call>{"name": "f", "arguments": {"a"').deltas).toEqual([
      { index: 0, id: 'call_0', type: 'function', function: { name: 'f', arguments: '' } },
      { index: 0, function: { arguments: '{"a"' } },
    ]);
    expect(stream.push(': 1}}</tool_call>').deltas).toEqual([{ index: 0, function: { arguments: ': 1}' } }]);
    expect(stream.calls).toBe(1);
  });

  it('Hermes: the newline a model writes after its last call is not content, streamed or not', () => {
    const text = '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>\n';
    expect(parseToolCalls(text, 'hermes', ids()).content).toBeNull();
    expect(streamed(text, 'hermes', 1).content).toBe('');
  });

  it('Hermes: arguments first is parsed when the call closes', () => {
    const parsed = parseToolCalls('<tool_call>{"arguments": {"a": 1}, "name": "f"}</tool_call>', 'hermes', ids());
    expect(parsed.toolCalls).toEqual([{ id: 'call_0', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }]);
  });

  it('Llama 3 JSON: an output that opens with an object is calls (parameters), separated by ;', () => {
    const text = '<|python_tag|>{"name": "a", "parameters": {"x": 1}}; {"name": "b", "parameters": {}}';
    expect(parseToolCalls(text, 'llama3_json', ids()).toolCalls.map((c) => [c.function.name, c.function.arguments])).toEqual([
      ['a', '{"x":1}'],
      ['b', '{}'],
    ]);
    expect(streamed(text, 'llama3_json', 3).calls.map((c) => c.name)).toEqual(['a', 'b']);
    expect(parseToolCalls('Hello {"name": "a"}', 'llama3_json')).toEqual({ content: 'Hello {"name": "a"}', toolCalls: [] });
  });

  it('Mistral: [TOOL_CALLS] then a JSON list', () => {
    const text = 'ok [TOOL_CALLS][{"name": "a", "arguments": {"x": 1}}, {"name": "b", "arguments": {}}]';
    const parsed = parseToolCalls(text, 'mistral', ids());
    expect(parsed.content).toBe('ok');
    expect(parsed.toolCalls.map((c) => c.function.name)).toEqual(['a', 'b']);
    expect(streamed(text, 'mistral', 2).content).toBe('ok');
  });
});
