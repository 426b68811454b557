/**
 * Tool calls out of a model's text, in the format its family writes (Hermes `<tool_call>{...}</tool_call>`,
 * Llama 3.x JSON, Mistral `[TOOL_CALLS][...]`), incrementally: pushed text comes back split into content and
 * OpenAI's `delta.tool_calls` fragments (the first with id, type and name, then the arguments as they arrive).
 * The whole-response view is the same stream folded. Plain code; no I/O, no moderation.
 */
import { createHash, randomBytes } from 'node:crypto';
import { TOOL_CALL_SHAPES, type ChatToolCallDelta, type ChatToolCallOut, type ToolCallFormat } from '@flywheel/contracts';

export interface ParsedStep {
  content: string;
  deltas: ChatToolCallDelta[];
}

const [HERMES_OPEN, HERMES_CLOSE] = TOOL_CALL_SHAPES.hermes.specialTokens as [string, string];
const MISTRAL_MARK = TOOL_CALL_SHAPES.mistral.trigger;
const [PYTHON_TAG] = TOOL_CALL_SHAPES.llama3_json.specialTokens as [string];
/** `{"name": "<name>", "arguments": ` at the start of a Hermes call, so the arguments can stream. */
const HERMES_HEADER = /^\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*/;

export const newToolCallId = (): string => `call_${randomBytes(12).toString('hex')}`;

/**
 * The ids of one choice's calls, derived from the completion id: the same output parsed again (a later request's
 * previous_response_id, an export) gets the same ids the client was sent.
 */
export function toolCallIdsFor(completionId: string, choiceIndex: number): () => string {
  let next = 0;
  return () => `call_${createHash('sha256').update(`${completionId}:${choiceIndex}:${next++}`).digest('hex').slice(0, 24)}`;
}

/** The length of the longest suffix of `text` that is a proper prefix of `tag` (text that may still become it). */
export function partialTagAt(text: string, tag: string): number {
  for (let n = Math.min(tag.length - 1, text.length); n > 0; n--) if (tag.startsWith(text.slice(text.length - n))) return n;
  return 0;
}

/** What must wait for more text: a partial tag at the end, and the whitespace before it (it may precede a call). */
function heldBack(text: string, tag: string): number {
  const partial = partialTagAt(text, tag);
  let start = text.length - partial;
  while (start > 0 && /\s/.test(text[start - 1]!)) start--;
  return text.length - start;
}

/** Where a JSON value starting at `from` ends (exclusive), or -1 while it is still open. Objects and arrays only. */
function jsonValueEnd(text: string, from: number): number {
  let depth = 0;
  let inString = false;
  for (let i = from; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

/** A call as JSON text in the Hermes / Mistral / Llama shapes: name plus arguments (or parameters). */
function callOf(value: unknown): { name: string; arguments: string } | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  const v = value as Record<string, unknown>;
  if (typeof v.name !== 'string') return null;
  const args = v.arguments ?? v.parameters ?? {};
  return { name: v.name, arguments: typeof args === 'string' ? args : JSON.stringify(args) };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export class ToolCallStream {
  private buffer = '';
  /** Hermes: 'text' outside calls; 'call' inside a tag before its header; 'args' streaming arguments; 'tail' after them. */
  private mode: 'text' | 'call' | 'args' | 'tail' | 'collect' = 'text';
  private argsFrom = 0;
  private count = 0;
  private sawContent = false;

  constructor(
    private readonly format: ToolCallFormat,
    private readonly newId: () => string = newToolCallId,
  ) {}

  get calls(): number {
    return this.count;
  }

  push(text: string): ParsedStep {
    this.buffer += text;
    return this.format === 'hermes' ? this.hermes(false) : this.wholeBlock(false);
  }

  end(): ParsedStep {
    return this.format === 'hermes' ? this.hermes(true) : this.wholeBlock(true);
  }

  private hermes(final: boolean): ParsedStep {
    const out: ParsedStep = { content: '', deltas: [] };
    for (;;) {
      if (this.mode === 'text') {
        const at = this.buffer.indexOf(HERMES_OPEN);
        if (at < 0) {
          const keep = final ? 0 : heldBack(this.buffer, HERMES_OPEN);
          const piece = this.buffer.slice(0, this.buffer.length - keep);
          // What a model writes after its last call (a newline before EOS) is not content.
          this.emitContent(out, final && this.count > 0 ? piece.trimEnd() : piece);
          this.buffer = this.buffer.slice(this.buffer.length - keep);
          return out;
        }
        // The newline a model writes between its words and a call is not content.
        this.emitContent(out, this.count > 0 || at === 0 ? this.buffer.slice(0, at).trim() : this.buffer.slice(0, at).trimEnd());
        this.buffer = this.buffer.slice(at + HERMES_OPEN.length);
        this.mode = 'call';
        continue;
      }
      if (this.mode === 'call') {
        const header = HERMES_HEADER.exec(this.buffer);
        const close = this.buffer.indexOf(HERMES_CLOSE);
        if (header && (this.buffer[header[0].length] === '{' || this.buffer[header[0].length] === '[')) {
          const name = parseJson(`"${header[1]}"`);
          if (typeof name === 'string') {
            out.deltas.push({ index: this.count, id: this.newId(), type: 'function', function: { name, arguments: '' } });
            this.buffer = this.buffer.slice(header[0].length);
            this.argsFrom = 0;
            this.mode = 'args';
            continue;
          }
        }
        if (close >= 0) {
          // Not the streaming shape: parse the whole call, or give it back as text when it is not one.
          const call = callOf(parseJson(this.buffer.slice(0, close)));
          if (call) out.deltas.push({ index: this.count++, id: this.newId(), type: 'function', function: call });
          else this.emitContent(out, `${HERMES_OPEN}${this.buffer.slice(0, close)}${HERMES_CLOSE}`);
          this.buffer = this.buffer.slice(close + HERMES_CLOSE.length);
          this.mode = 'text';
          continue;
        }
        if (final) {
          this.emitContent(out, `${HERMES_OPEN}${this.buffer}`);
          this.buffer = '';
        }
        return out;
      }
      if (this.mode === 'args') {
        const end = jsonValueEnd(this.buffer, 0);
        const upTo = end < 0 ? this.buffer.length : end;
        if (upTo > this.argsFrom) out.deltas.push({ index: this.count, function: { arguments: this.buffer.slice(this.argsFrom, upTo) } });
        this.argsFrom = upTo;
        if (end < 0) {
          if (final) this.count++;
          return out;
        }
        this.count++;
        this.buffer = this.buffer.slice(end);
        this.mode = 'tail';
        continue;
      }
      // tail: the call object's closing brace and the closing tag are dropped.
      const close = this.buffer.indexOf(HERMES_CLOSE);
      if (close < 0) {
        if (final) this.buffer = '';
        return out;
      }
      this.buffer = this.buffer.slice(close + HERMES_CLOSE.length);
      this.mode = 'text';
    }
  }

  /**
   * Llama 3.x JSON and Mistral: calls are a block to the end of the output, parsed when it ends; text before
   * the block streams as content.
   */
  private wholeBlock(final: boolean): ParsedStep {
    const out: ParsedStep = { content: '', deltas: [] };
    if (this.mode === 'text') {
      const start = this.format === 'mistral' ? this.buffer.indexOf(MISTRAL_MARK) : this.llamaStart();
      if (start !== null && start >= 0) {
        this.emitContent(out, this.buffer.slice(0, start).trimEnd());
        this.buffer = this.buffer.slice(start);
        this.mode = 'collect';
      } else {
        if (start === null && !final) return out; // Llama: undecided while only whitespace or part of the tag came
        const keep = final || this.format !== 'mistral' ? 0 : heldBack(this.buffer, MISTRAL_MARK);
        this.emitContent(out, this.buffer.slice(0, this.buffer.length - keep));
        this.buffer = this.buffer.slice(this.buffer.length - keep);
        return out;
      }
    }
    if (!final) return out;
    const calls = this.format === 'mistral' ? this.mistralCalls(this.buffer) : this.llamaCalls(this.buffer);
    if (calls === null) this.emitContent(out, this.buffer);
    else for (const c of calls) out.deltas.push({ index: this.count++, id: this.newId(), type: 'function', function: c });
    this.buffer = '';
    return out;
  }

  /** Llama: the output is calls when it opens with the python tag or a JSON object; null = not known yet. */
  private llamaStart(): number | null {
    if (this.sawContent) return -1;
    const trimmed = this.buffer.trimStart();
    if (trimmed === '') return null;
    if (trimmed.startsWith('{') || trimmed.startsWith(PYTHON_TAG)) return this.buffer.length - trimmed.length;
    if (PYTHON_TAG.startsWith(trimmed)) return null;
    return -1;
  }

  private llamaCalls(text: string): Array<{ name: string; arguments: string }> | null {
    const body = text.trim().replace(PYTHON_TAG, '');
    const calls: Array<{ name: string; arguments: string }> = [];
    let at = 0;
    while (at < body.length) {
      while (at < body.length && /[\s;]/.test(body[at]!)) at++;
      if (at >= body.length) break;
      const end = body[at] === '{' ? jsonValueEnd(body, at) : -1;
      const call = end < 0 ? null : callOf(parseJson(body.slice(at, end)));
      if (!call) return null;
      calls.push(call);
      at = end;
    }
    return calls.length > 0 ? calls : null;
  }

  private mistralCalls(text: string): Array<{ name: string; arguments: string }> | null {
    const list = parseJson(text.slice(MISTRAL_MARK.length).trim());
    const items = Array.isArray(list) ? list : [list];
    const calls = items.map(callOf);
    return calls.length > 0 && calls.every((c) => c !== null) ? (calls as Array<{ name: string; arguments: string }>) : null;
  }

  private emitContent(out: ParsedStep, text: string): void {
    if (text === '') return;
    out.content += text;
    if (text.trim() !== '') this.sawContent = true;
  }
}

/** Adds streamed fragments to the calls they belong to (by index), as an SDK folds `delta.tool_calls`. */
export function foldToolCallDeltas(calls: ChatToolCallOut[], deltas: readonly ChatToolCallDelta[], newId: () => string = newToolCallId): void {
  for (const d of deltas) {
    const call = (calls[d.index] ??= { id: d.id ?? newId(), type: 'function', function: { name: '', arguments: '' } });
    if (d.function?.name !== undefined) call.function.name = d.function.name;
    if (d.function?.arguments !== undefined) call.function.arguments += d.function.arguments;
  }
}

/** The whole-response view: content (null when there was none) and the calls, as OpenAI's message has them. */
export function parseToolCalls(text: string, format: ToolCallFormat, newId: () => string = newToolCallId): { content: string | null; toolCalls: ChatToolCallOut[] } {
  const stream = new ToolCallStream(format, newId);
  const steps = [stream.push(text), stream.end()];
  const content = steps.map((s) => s.content).join('');
  const toolCalls: ChatToolCallOut[] = [];
  foldToolCallDeltas(toolCalls, steps.flatMap((s) => s.deltas), newId);
  return { content: content === '' && toolCalls.length > 0 ? null : content, toolCalls };
}
