import type { ChatCompletionChunk, ResponseCreateRequest } from '@flywheel/contracts';
import { OpenAiError } from '../http/openai-error';
import { chatBodyOf, chatMessagesOfInput, chatTurnsOfInput, completionIdOf, historyOfPrevious, INSTRUCTIONS_NAME, ResponseEventTranslator, responseIdOf, responsesErrorOf, responseShell } from './responses.mapping';

const req = (over: Partial<ResponseCreateRequest> = {}): ResponseCreateRequest => ({ model: 'm', input: 'hi', ...over }) as ResponseCreateRequest;

describe('Responses API on chat completions', () => {
  it('maps ids both ways', () => {
    expect(responseIdOf('chatcmpl-abc')).toBe('resp_abc');
    expect(completionIdOf('resp_abc')).toBe('chatcmpl-abc');
    expect(completionIdOf('msg_abc')).toBeNull();
  });

  it('input items become chat turns; consecutive calls join one assistant turn', () => {
    expect(
      chatMessagesOfInput([
        { role: 'user', content: [{ type: 'input_text', text: 'a' }] },
        { type: 'function_call', call_id: 'c1', name: 'f', arguments: '{}' },
        { type: 'function_call', call_id: 'c2', name: 'g', arguments: '{"x":1}' },
        { type: 'function_call_output', call_id: 'c1', output: 'r1' },
      ]),
    ).toEqual([
      { role: 'user', content: 'a' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } },
          { id: 'c2', type: 'function', function: { name: 'g', arguments: '{"x":1}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'c1', content: 'r1' },
    ]);
  });

  it('the chat body carries instructions, tools, formats and limits; a continuation drops the old instructions', () => {
    const body = chatBodyOf(
      req({
        instructions: 'be brief',
        tools: [{ type: 'function', name: 'f', parameters: { type: 'object' } }],
        tool_choice: { type: 'function', name: 'f' },
        text: { format: { type: 'json_schema', name: 's', schema: { type: 'object' }, strict: true } },
        max_output_tokens: 9,
        stream: true,
      }),
      [],
    );
    expect(body).toMatchObject({
      messages: [{ role: 'system', content: 'be brief', name: INSTRUCTIONS_NAME }, { role: 'user', content: 'hi' }],
      tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }],
      tool_choice: { type: 'function', function: { name: 'f' } },
      response_format: { type: 'json_schema', json_schema: { name: 's', schema: { type: 'object' }, strict: true } },
      max_completion_tokens: 9,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(historyOfPrevious(body, { content: 'ok', toolCalls: [] })).toEqual([{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'ok' }]);
  });

  it("renames a chat-path error's parameters into the Responses API's", () => {
    const input = [
      { role: 'user' as const, content: 'a' },
      { type: 'function_call' as const, call_id: 'c1', name: 'f', arguments: '{}' },
      { type: 'function_call' as const, call_id: 'c2', name: 'g', arguments: '{}' },
      { type: 'function_call_output' as const, call_id: 'zz', output: 'r' },
    ];
    const { origin } = chatTurnsOfInput(input);
    expect(origin).toEqual([0, 1, 3]);
    // One instruction turn and one earlier turn come first: chat turn 4 is the input's function_call_output (item 3).
    const err = responsesErrorOf(OpenAiError.invalid("'messages[4].tool_call_id' \"zz\" does not answer a tool call.", 'messages[4].tool_call_id'), 2, origin, false);
    expect(err.param).toBe('input[3].call_id');
    expect(err.message).toBe("'input[3].call_id' \"zz\" does not answer a tool call.");
    expect(responsesErrorOf(OpenAiError.invalid('x', 'messages[1].content'), 2, origin, false).param).toBe('previous_response_id');
    expect(responsesErrorOf(OpenAiError.invalid('x', 'messages[0].content'), 0, [0], true).param).toBe('input');
    expect(responsesErrorOf(OpenAiError.invalid('x', 'tools[1].function.parameters.properties.a.not'), 0, [], true).param).toBe('tools[1].parameters.properties.a.not');
    expect(responsesErrorOf(OpenAiError.invalid('x', 'response_format.json_schema.schema.type'), 0, [], true).param).toBe('text.format.schema.type');
    expect(responsesErrorOf(OpenAiError.invalid('x', 'tool_choice.function.name'), 0, [], true).param).toBe('tool_choice.name');
    expect(responsesErrorOf(OpenAiError.invalid('x', 'max_completion_tokens'), 0, [], true).param).toBe('max_output_tokens');
  });

  it('translates chat chunks into response events in order', () => {
    const t = new ResponseEventTranslator(responseShell(req(), 'resp_x', 1));
    const chunk = (delta: ChatCompletionChunk['choices'][number]['delta'], finish: ChatCompletionChunk['choices'][number]['finish_reason'] = null): ChatCompletionChunk => ({
      id: 'chatcmpl-x',
      object: 'chat.completion.chunk',
      created: 1,
      model: 'm',
      system_fingerprint: 'v',
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    });
    const events = [
      ...t.start(),
      ...t.chunk(chunk({ role: 'assistant', content: '' })),
      ...t.chunk(chunk({ content: 'Hel' })),
      ...t.chunk(chunk({ content: 'lo' })),
      ...t.chunk(chunk({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'f', arguments: '' } }] })),
      ...t.chunk(chunk({ tool_calls: [{ index: 0, function: { arguments: '{}' } }] })),
      ...t.chunk(chunk({}, 'tool_calls')),
    ] as Array<{ type: string; sequence_number: number }>;
    const end = t.end();
    const all = [...events, ...(end.events as typeof events)];
    expect(all.map((e) => e.type)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(all.map((e) => e.sequence_number)).toEqual(all.map((_, i) => i));
    expect(end.response.output).toEqual([
      { type: 'message', id: 'msg_x_0', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'Hello', annotations: [] }] },
      { type: 'function_call', id: 'fc_x_1', call_id: 'call_1', name: 'f', arguments: '{}', status: 'completed' },
    ]);
  });
});
