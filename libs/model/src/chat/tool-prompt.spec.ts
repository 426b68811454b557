import { Template } from '@huggingface/jinja';
import { toolCallText, type ChatTool, type PromptMessage } from '@flywheel/contracts';
import { detectToolCallFormat, templateChat, templateHandlesTools } from './tool-prompt';

const TOOL: ChatTool = { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } };
const HISTORY: PromptMessage[] = [
  { role: 'user', content: 'Weather?' },
  { role: 'assistant', content: '', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: { city: 'Rome' } } }] },
  { role: 'tool', content: '{"t": 21}', tool_call_id: 'call_1', name: 'get_weather' },
];

/** A Qwen 2.5-style template fragment: renders tools and tool calls itself. */
const QWEN_LIKE =
  '{%- if tools %}<tools>{% for t in tools %}{{ t.function.name }}{% endfor %}</tools>{% endif %}' +
  '{%- for m in messages %}<|{{ m.role }}|>{{ m.content }}' +
  '{%- if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>{{ c.function.name }}:{{ c.function.arguments.city }}</tool_call>{% endfor %}{% endif %}' +
  '{% endfor %}';
const PLAIN = "{% for m in messages %}{{ '<|' + m.role + '|>\\n' + m.content + '\\n' }}{% endfor %}";

describe('tools in the prompt', () => {
  it('detects the format from the template, or takes the configured one', () => {
    expect(detectToolCallFormat('... <tool_call> ...', 'auto')).toBe('hermes');
    expect(detectToolCallFormat('{{ "<|python_tag|>" }}', 'auto')).toBe('llama3_json');
    expect(detectToolCallFormat('[TOOL_CALLS]', 'auto')).toBe('mistral');
    expect(detectToolCallFormat(null, 'auto')).toBe('hermes');
    expect(detectToolCallFormat('[TOOL_CALLS]', 'hermes')).toBe('hermes');
    expect(templateHandlesTools(QWEN_LIKE)).toBe(true);
    expect(templateHandlesTools(PLAIN)).toBe(false);
  });

  it('a template that renders tools gets them as transformers passes them (arguments parsed)', () => {
    const chat = templateChat(HISTORY, [TOOL], { format: 'hermes', templateHandlesTools: true });
    const text = new Template(QWEN_LIKE).render({ messages: chat.messages, ...chat.variables });
    expect(text).toBe('<tools>get_weather</tools><|user|>Weather?<|assistant|><tool_call>get_weather:Rome</tool_call><|tool|>{"t": 21}');
  });

  it('a template that does not gets the preamble and the calls and results as text', () => {
    const chat = templateChat(HISTORY, [TOOL], { format: 'hermes', templateHandlesTools: false });
    const text = new Template(PLAIN).render({ messages: chat.messages, ...chat.variables });
    expect(chat.messages[0]!.role).toBe('system');
    expect(text).toContain('<tools>\n{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}\n</tools>');
    expect(text).toContain('<|assistant|>\n<tool_call>\n{"name":"get_weather","arguments":{"city":"Rome"}}\n</tool_call>\n');
    expect(text).toContain('<|tool|>\n<tool_response>\n{"t": 21}\n</tool_response>\n');
  });

  it('without tools the messages are only role and content', () => {
    expect(templateChat([{ role: 'user', content: 'hi' }], undefined, { format: 'hermes', templateHandlesTools: true })).toEqual({
      messages: [{ role: 'user', content: 'hi' }],
      variables: {},
    });
  });

  it('writes calls in each family format', () => {
    const calls = [{ name: 'f', arguments: { a: 1 } }];
    expect(toolCallText('hermes', calls)).toBe('<tool_call>\n{"name":"f","arguments":{"a":1}}\n</tool_call>');
    expect(toolCallText('llama3_json', calls)).toBe('{"name":"f","parameters":{"a":1}}');
    expect(toolCallText('mistral', calls)).toBe('[TOOL_CALLS][{"name":"f","arguments":{"a":1}}]');
  });
});
