/**
 * How each model family writes a tool call, in one place: the text around `{"name": …, "<argsKey>": …}`, what opens a
 * call in free text, what separates parallel calls, and the special tokens the format writes. The grammar that
 * forces calls (libs/model/grammar), the prompt that shows them (libs/model/chat) and the parser that reads them
 * (the gateway) all follow it. Pure; no parsing here.
 */
import type { ToolCallFormat } from './policy.schemas';

export interface ToolCallShape {
  /** Text before the call object, and after it. */
  open: string;
  close: string;
  /** The key of the arguments in the call object. */
  argsKey: 'arguments' | 'parameters';
  /** What opens a call in free text (a prefix of `open` + the object's start). */
  trigger: string;
  /** Between parallel calls. */
  separator: string;
  /** Special tokens the format writes as text (they must stay in a grammar's vocabulary). */
  specialTokens: readonly string[];
}

export const TOOL_CALL_SHAPES: Record<ToolCallFormat, ToolCallShape> = {
  hermes: { open: '<tool_call>\n', close: '\n</tool_call>', argsKey: 'arguments', trigger: '<tool_call>', separator: '\n', specialTokens: ['<tool_call>', '</tool_call>'] },
  llama3_json: { open: '', close: '', argsKey: 'parameters', trigger: '{"name": "', separator: '; ', specialTokens: ['<|python_tag|>'] },
  mistral: { open: '', close: '', argsKey: 'arguments', trigger: '[TOOL_CALLS]', separator: ', ', specialTokens: ['[TOOL_CALLS]'] },
};

/** Calls as a model of `format` writes them (the text a chat template without tool support is given). */
export function toolCallText(format: ToolCallFormat, calls: ReadonlyArray<{ name: string; arguments: unknown }>): string {
  switch (format) {
    case 'hermes':
      return calls.map((c) => `<tool_call>\n${JSON.stringify({ name: c.name, arguments: c.arguments })}\n</tool_call>`).join('\n');
    case 'llama3_json':
      return calls.map((c) => JSON.stringify({ name: c.name, parameters: c.arguments })).join('; ');
    case 'mistral':
      return `[TOOL_CALLS]${JSON.stringify(calls.map((c) => ({ name: c.name, arguments: c.arguments })))}`;
  }
}

/** A tool's result as the model reads it (Hermes `<tool_response>`, as Qwen's template writes it). */
export function toolResponseText(content: string): string {
  return `<tool_response>\n${content}\n</tool_response>`;
}
