/**
 * The agent-facing parts of a chat request: tools and tool_choice, response_format, and a history with tool
 * calls and tool results. Checks them (400 naming the field: an unsupported schema keyword, a tool message
 * answering no call, arguments that are not JSON) and maps them onto the policy's request: the prompt's messages
 * and tools, and the output constraint the sampler keeps to. Plain functions; the rest of the plan is in
 * openai-request.mapping.ts.
 */
import {
  checkJsonSchema,
  JsonSchemaSupportError,
  toolCallText,
  toolResponseText,
  type ChatCompletionRequest,
  type ChatMessage,
  type ChatTool,
  type OutputConstraint,
  type PolicyInfo,
  type PromptMessage,
  type ToolCallFormat,
} from '@flywheel/contracts';
import { OpenAiError } from '../http/openai-error';

const EMPTY_PARAMETERS = { type: 'object', properties: {} };

export interface AgentPlan {
  /** The policy's prompt turns (tool calls and results included). */
  messages: PromptMessage[];
  /** The same history as plain turns (calls and results written as text): what moderation reads and the record keeps. */
  plainMessages: ChatMessage[];
  tools: ChatTool[] | undefined;
  constraint: OutputConstraint | undefined;
  /** Parse tool calls out of the output in this format (null: the request offered no tools). */
  toolCallFormat: ToolCallFormat | null;
}

const schemaError = (err: unknown): never => {
  if (err instanceof JsonSchemaSupportError) throw OpenAiError.invalid(err.message, err.param, 'invalid_json_schema');
  throw err;
};

function textOf(content: ChatCompletionRequest['messages'][number]['content']): string | null {
  if (content == null) return null;
  return typeof content === 'string' ? content : content.map((p) => p.text).join('\n');
}

/** History → the policy's turns; every tool message must answer a call an earlier assistant turn made. */
function historyOf(req: Pick<ChatCompletionRequest, 'messages'>): { messages: PromptMessage[]; plain: ChatMessage[] } {
  const calls = new Map<string, string>(); // tool_call_id → function name
  const messages: PromptMessage[] = [];
  const plain: ChatMessage[] = [];
  req.messages.forEach((m, i) => {
    if (m.role === 'function') {
      throw OpenAiError.invalid(`'messages[${i}].role' 'function' is the deprecated function-calling API; use tools and 'tool' messages.`, `messages[${i}].role`, 'unsupported_parameter');
    }
    if (m.function_call != null) {
      throw OpenAiError.invalid(`'messages[${i}].function_call' is the deprecated function-calling API; use tool_calls.`, `messages[${i}].function_call`, 'unsupported_parameter');
    }
    const content = textOf(m.content);
    if (m.role === 'tool') {
      if (m.tool_call_id == null || !calls.has(m.tool_call_id)) {
        throw OpenAiError.invalid(
          `'messages[${i}].tool_call_id' ${JSON.stringify(m.tool_call_id ?? null)} does not answer a tool call of an earlier assistant message.`,
          `messages[${i}].tool_call_id`,
        );
      }
      if (content == null) throw OpenAiError.invalid(`Missing required parameter: 'messages[${i}].content'.`, `messages[${i}].content`);
      const name = calls.get(m.tool_call_id)!;
      messages.push({ role: 'tool', content, tool_call_id: m.tool_call_id, name });
      plain.push({ role: 'user', content: toolResponseText(content) });
      return;
    }
    const toolCalls = m.role === 'assistant' ? (m.tool_calls ?? []) : [];
    if (m.role !== 'assistant' && m.tool_calls != null && m.tool_calls.length > 0) {
      throw OpenAiError.invalid(`'messages[${i}].tool_calls' is only allowed on assistant messages.`, `messages[${i}].tool_calls`);
    }
    if (content == null && toolCalls.length === 0) throw OpenAiError.invalid(`Missing required parameter: 'messages[${i}].content'.`, `messages[${i}].content`);
    const parsedCalls = toolCalls.map((c, j) => {
      let args: unknown;
      try {
        args = JSON.parse(c.function.arguments);
      } catch {
        throw OpenAiError.invalid(`'messages[${i}].tool_calls[${j}].function.arguments' is not valid JSON.`, `messages[${i}].tool_calls[${j}].function.arguments`);
      }
      calls.set(c.id, c.function.name);
      return { id: c.id, type: 'function' as const, function: { name: c.function.name, arguments: args } };
    });
    const role = m.role === 'developer' ? 'system' : m.role;
    messages.push({ role, content: content ?? '', ...(parsedCalls.length > 0 ? { tool_calls: parsedCalls } : {}) });
    const callText = parsedCalls.length > 0 ? toolCallText('hermes', parsedCalls.map((c) => ({ name: c.function.name, arguments: c.function.arguments }))) : '';
    plain.push({ role, content: [content ?? '', callText].filter((t) => t !== '').join('\n') });
  });
  return { messages, plain };
}

/** A history's turns for the policy (a /tokenize body's messages, say). */
export function promptMessagesOf(req: Pick<ChatCompletionRequest, 'messages'>): PromptMessage[] {
  return historyOf(req).messages;
}

function toolsOf(req: Pick<ChatCompletionRequest, 'tools'>): ChatTool[] {
  const names = new Set<string>();
  return (req.tools ?? []).map((t, i) => {
    if (names.has(t.function.name)) throw OpenAiError.invalid(`'tools[${i}].function.name' ${JSON.stringify(t.function.name)} is listed twice.`, `tools[${i}].function.name`);
    names.add(t.function.name);
    let parameters: Record<string, unknown>;
    try {
      parameters = checkJsonSchema(t.function.parameters ?? EMPTY_PARAMETERS, `tools[${i}].function.parameters`);
    } catch (err) {
      return schemaError(err);
    }
    return {
      type: 'function',
      function: { name: t.function.name, ...(t.function.description != null ? { description: t.function.description } : {}), parameters },
    };
  });
}

export function planAgentParts(req: ChatCompletionRequest, info: PolicyInfo): AgentPlan {
  const history = historyOf(req);
  const offered = toolsOf(req);
  const choice = req.tool_choice ?? (offered.length > 0 ? 'auto' : 'none');
  if (choice !== 'none' && offered.length === 0) {
    throw OpenAiError.invalid("'tool_choice' is only allowed when 'tools' are specified.", 'tool_choice');
  }
  let named: ChatTool | undefined;
  if (typeof choice === 'object') {
    named = offered.find((t) => t.function.name === choice.function.name);
    if (!named) throw OpenAiError.invalid(`'tool_choice.function.name' ${JSON.stringify(choice.function.name)} is not one of the tools.`, 'tool_choice.function.name');
  }
  const format = req.response_format ?? { type: 'text' as const };
  const usesTools = choice !== 'none';
  if (usesTools && format.type !== 'text') {
    throw OpenAiError.invalid("'response_format' other than 'text' cannot be combined with tools unless 'tool_choice' is 'none'.", 'response_format', 'unsupported_parameter');
  }
  let constraint: OutputConstraint | undefined;
  if (format.type === 'json_object') constraint = { kind: 'json_object' };
  if (format.type === 'json_schema') {
    const schema = format.json_schema.schema;
    if (schema == null) constraint = { kind: 'json_object' };
    else {
      try {
        constraint = { kind: 'json_schema', schema: checkJsonSchema(schema, 'response_format.json_schema.schema'), strict: format.json_schema.strict === true };
      } catch (err) {
        schemaError(err);
      }
    }
  }
  if (usesTools) {
    const callable = named ? [named] : offered;
    constraint = {
      kind: 'tool_calls',
      tools: callable.map((t) => ({
        name: t.function.name,
        parameters: t.function.parameters,
        strict: req.tools?.find((r) => r.function.name === t.function.name)?.function.strict === true,
      })),
      mode: choice === 'auto' ? 'auto' : 'required',
      parallel: named ? false : req.parallel_tool_calls !== false,
    };
  }
  return {
    messages: history.messages,
    plainMessages: history.plain,
    // tool_choice none: the model is not told about tools it may not call.
    tools: usesTools ? offered : undefined,
    constraint,
    toolCallFormat: usesTools ? info.toolCallFormat : null,
  };
}
