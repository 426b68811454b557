/**
 * Separates a reasoning model's thinking from its answer, as vLLM's reasoning parsers and DeepSeek's API do:
 * text inside `<think>…</think>` becomes `reasoning_content`, the rest `content`. Models whose template opens the
 * think block in the prompt (DeepSeek-R1 style: `startsOpen`) think from the first token until `</think>`; the
 * others (Qwen3) think only when their output opens with `<think>`. Incremental, so it serves streaming too.
 */
import { partialTagAt } from './tool-calls.parser';

const OPEN = '<think>';
const CLOSE = '</think>';

export interface ReasoningStep {
  reasoning: string;
  content: string;
}

export class ThinkSplitter {
  private mode: 'start' | 'thinking' | 'answer';
  private buffer = '';
  /** Just left the think block: whitespace before the answer is dropped. */
  private skipSpace = false;

  constructor(startsOpen: boolean) {
    this.mode = startsOpen ? 'thinking' : 'start';
  }

  push(text: string): ReasoningStep {
    this.buffer += text;
    return this.drain(false);
  }

  end(): ReasoningStep {
    return this.drain(true);
  }

  private drain(final: boolean): ReasoningStep {
    const out: ReasoningStep = { reasoning: '', content: '' };
    for (;;) {
      if (this.mode === 'start') {
        const trimmed = this.buffer.trimStart();
        if (trimmed.startsWith(OPEN)) {
          this.buffer = trimmed.slice(OPEN.length);
          this.mode = 'thinking';
          continue;
        }
        if (!final && OPEN.startsWith(trimmed)) return out; // may still open a think block
        this.mode = 'answer';
        continue;
      }
      if (this.mode === 'thinking') {
        const close = this.buffer.indexOf(CLOSE);
        if (close >= 0) {
          out.reasoning += this.buffer.slice(0, close);
          this.buffer = this.buffer.slice(close + CLOSE.length);
          this.mode = 'answer';
          this.skipSpace = true;
          continue;
        }
        const keep = final ? 0 : partialTagAt(this.buffer, CLOSE);
        out.reasoning += this.buffer.slice(0, this.buffer.length - keep);
        this.buffer = this.buffer.slice(this.buffer.length - keep);
        return out;
      }
      // The newlines a model writes after </think> are not part of the answer.
      if (this.skipSpace) {
        this.buffer = this.buffer.replace(/^\s+/, '');
        if (this.buffer !== '') this.skipSpace = false;
      }
      out.content += this.buffer;
      this.buffer = '';
      return out;
    }
  }
}
