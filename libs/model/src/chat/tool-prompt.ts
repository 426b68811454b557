/**
 * Tools in the prompt: which tool-call format a chat template speaks (detected from its source, or configured),
 * and the chat a template renders when the request has tools, tool calls or tool results. A template that
 * handles tools itself gets them as transformers passes them (`tools`, `tool_calls` with parsed arguments,
 * `tool` turns); one that does not (the tiny default model's) gets a Hermes-style system preamble and the calls
 * and results written as text in the model's format. Pure functions; no tokenizer, no engine.
 */
import { toolCallText, toolResponseText, type ChatTool, type PromptMessage, type ToolCallFormat } from '@flywheel/contracts';

/** What the configured format is when set to 'auto': the template's own markers, else Hermes. */
export function detectToolCallFormat(templateSource: string | null, configured: 'auto' | ToolCallFormat): ToolCallFormat {
  if (configured !== 'auto') return configured;
  const src = templateSource ?? '';
  if (src.includes('[TOOL_CALLS]')) return 'mistral';
  if (src.includes('<|python_tag|>') || src.includes('ipython')) return 'llama3_json';
  return 'hermes';
}

/**
 * Whether chat output carries `<think>` blocks to split off (configured, or the template mentions `<think>`), and
 * whether the template's generation prompt already opens one (`render` renders a one-turn chat with it).
 */
export function detectReasoning(
  templateSource: string | null,
  configured: 'auto' | 'none' | 'think',
  render: () => string,
): { format: 'think'; startsOpen: boolean } | null {
  if (configured === 'none' || templateSource === null) return null;
  if (configured === 'auto' && !templateSource.includes('<think>')) return null;
  let startsOpen = false;
  try {
    startsOpen = render().trimEnd().endsWith('<think>');
  } catch {
    // A template that needs more than one user turn to render: the model opens its own think block.
  }
  return { format: 'think', startsOpen };
}

/** Whether the template renders `tools` and `tool_calls` itself (Qwen, Llama 3.x, Mistral, SmolLM3 templates do). */
export function templateHandlesTools(templateSource: string | null): boolean {
  const src = templateSource ?? '';
  return /\btools\b/.test(src) && /\btool_calls\b/.test(src);
}

/**
 * The tools preamble for templates that do not render tools: Hermes-style, kept short (small models have short
 * contexts): each tool as one compact JSON line, then how a call is written.
 */
export function toolsPreamble(tools: readonly ChatTool[], format: ToolCallFormat): string {
  const example = toolCallText(format, [{ name: 'NAME', arguments: 'ARGS' }]).replace('"ARGS"', '{...}');
  const lines = tools.map((t) => JSON.stringify({ name: t.function.name, ...(t.function.description ? { description: t.function.description } : {}), parameters: t.function.parameters }));
  return `Tools:\n<tools>\n${lines.join('\n')}\n</tools>\nCall a tool as:\n${example}`;
}

export interface TemplateMessage {
  role: string;
  content: string;
  [key: string]: unknown;
}

export interface TemplateChat {
  messages: TemplateMessage[];
  /** Extra template variables (`tools` when the template renders them). */
  variables: Record<string, unknown>;
}

/** The messages and variables a template is rendered with for a chat that may carry tools. */
export function templateChat(
  messages: readonly PromptMessage[],
  tools: readonly ChatTool[] | undefined,
  options: { format: ToolCallFormat; templateHandlesTools: boolean },
): TemplateChat {
  const usesTools = (tools?.length ?? 0) > 0 || messages.some((m) => m.role === 'tool' || (m.tool_calls?.length ?? 0) > 0);
  if (!usesTools) return { messages: messages.map((m) => ({ role: m.role, content: m.content })), variables: {} };
  if (options.templateHandlesTools) {
    return {
      messages: messages.map((m) => ({ ...m })),
      variables: tools && tools.length > 0 ? { tools } : {},
    };
  }
  const out: TemplateMessage[] = messages.map((m): TemplateMessage => {
    if (m.role === 'assistant' && m.tool_calls && m.tool_calls.length > 0) {
      const calls = toolCallText(options.format, m.tool_calls.map((c) => ({ name: c.function.name, arguments: c.function.arguments })));
      return { role: 'assistant', content: m.content === '' ? calls : `${m.content}\n${calls}` };
    }
    if (m.role === 'tool') return { role: 'tool', content: toolResponseText(m.content) };
    return { role: m.role, content: m.content };
  });
  if (tools && tools.length > 0) {
    const preamble = toolsPreamble(tools, options.format);
    if (out[0]?.role === 'system') out[0] = { role: 'system', content: `${out[0].content}\n\n${preamble}` };
    else out.unshift({ role: 'system', content: preamble });
  }
  return { messages: out, variables: {} };
}
