/**
 * A stored message or answer split into what a reviewer should see apart: plain text, the tool calls a model wrote
 * (Hermes `<tool_call>{...}</tool_call>`), tool results fed back (`<tool_response>`), and a reasoning model's
 * `<think>` block. Records keep the raw text (what the model read and wrote); this is only how the UI shows it.
 */
export type MessagePart =
  | { kind: 'text'; text: string }
  | { kind: 'tool_call'; name: string; arguments: string; raw: string }
  | { kind: 'tool_result'; text: string }
  | { kind: 'thinking'; text: string };

const TAGS = /<tool_call>([\s\S]*?)<\/tool_call>|<tool_response>([\s\S]*?)<\/tool_response>|<think>([\s\S]*?)(?:<\/think>|$)/g;

function callOf(body: string): { name: string; arguments: string } | null {
  try {
    const v = JSON.parse(body) as { name?: unknown; arguments?: unknown; parameters?: unknown };
    if (typeof v.name !== 'string') return null;
    return { name: v.name, arguments: JSON.stringify(v.arguments ?? v.parameters ?? {}, null, 2) };
  } catch {
    return null;
  }
}

export function messageParts(text: string): MessagePart[] {
  const parts: MessagePart[] = [];
  const pushText = (t: string) => {
    if (t.trim() !== '') parts.push({ kind: 'text', text: t.trim() });
  };
  let at = 0;
  for (const m of text.matchAll(TAGS)) {
    pushText(text.slice(at, m.index));
    at = m.index + m[0].length;
    if (m[1] !== undefined) {
      const call = callOf(m[1].trim());
      parts.push(call ? { kind: 'tool_call', ...call, raw: m[0] } : { kind: 'text', text: m[0] });
    } else if (m[2] !== undefined) parts.push({ kind: 'tool_result', text: m[2].trim() });
    else parts.push({ kind: 'thinking', text: (m[3] ?? '').trim() });
  }
  pushText(text.slice(at));
  return parts;
}
