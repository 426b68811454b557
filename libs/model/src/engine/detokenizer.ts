/**
 * Incremental detokenization of one choice's output and stop-string matching over it.
 * Text is emitted only once it is complete (no U+FFFD halves of a multi-byte character split across
 * byte-fallback tokens), and text that could still turn into a stop string is held back.
 * It does not decide stop token ids or lengths (the engine does); the tokenizer itself lives in loading/.
 */
import type { TokenDecoder } from './engine.types';

/** Prompt tokens kept in the decode window, so the first output token keeps its leading space (vLLM uses 5). */
const PROMPT_WINDOW = 5;
const REPLACEMENT_CHAR = '\uFFFD';

/**
 * Decodes a growing id list by diffing two windows, as vLLM and TGI do: decode(ids[prefix:read]) against
 * decode(ids[prefix:]). Decoders that strip a leading space or merge byte tokens only see whole windows,
 * so the diff is the exact new text. Invariant: ids[prefix:read] ends on a complete character.
 */
export class IncrementalDetokenizer {
  private readonly ids: number[];
  private prefixOffset: number;
  private readOffset: number;

  constructor(
    private readonly decoder: TokenDecoder,
    promptIds: readonly number[],
  ) {
    this.ids = promptIds.slice(Math.max(0, promptIds.length - PROMPT_WINDOW));
    this.prefixOffset = 0;
    this.readOffset = this.ids.length;
  }

  /** Adds one output token; returns the text it completes ('' while a character is still incomplete). */
  push(tokenId: number): string {
    this.ids.push(tokenId);
    const prefixText = this.decoder.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const newText = this.decoder.decode(this.ids.slice(this.prefixOffset));
    if (newText.length <= prefixText.length || newText.endsWith(REPLACEMENT_CHAR)) return '';
    this.advance();
    return newText.slice(prefixText.length);
  }

  /** Text still held at the end of the output (an incomplete character decodes as U+FFFD, like decode(all)). */
  flush(): string {
    const prefixText = this.decoder.decode(this.ids.slice(this.prefixOffset, this.readOffset));
    const newText = this.decoder.decode(this.ids.slice(this.prefixOffset));
    this.advance();
    return newText.length > prefixText.length ? newText.slice(prefixText.length) : '';
  }

  private advance(): void {
    // Drop what the window no longer needs so decode cost stays O(window), not O(output).
    this.ids.splice(0, this.readOffset);
    this.prefixOffset = 0;
    this.readOffset = this.ids.length;
  }
}

export interface StopCheck {
  /** Text safe to send now. */
  emit: string;
  /** A stop string matched; the output ends before it. */
  stopped: boolean;
}

/**
 * Finds stop strings in the output text, also across token boundaries. Holds back the longest tail that is
 * a proper prefix of some stop string; so no match can start inside text already emitted, and the search
 * only ever starts at the emitted mark.
 */
export class StopStringMatcher {
  private readonly stops: string[];
  private text = '';
  private emitted = 0;
  private stopMatched = false;

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
  }

  /** The output text so far, truncated before a matched stop string. */
  get fullText(): string {
    return this.text;
  }

  /** A stop string matched; the text is final. */
  get matched(): boolean {
    return this.stopMatched;
  }

  /** `canStop` false (min_tokens not reached, as vLLM): the text is released and no stop string is looked for in it. */
  add(delta: string, canStop = true): StopCheck {
    if (this.stopMatched) return { emit: '', stopped: true };
    this.text += delta;
    if (this.stops.length === 0 || !canStop) return this.emitUpTo(this.text.length, false);
    let match = -1;
    for (const stop of this.stops) {
      const at = this.text.indexOf(stop, this.emitted);
      if (at >= 0 && (match < 0 || at < match)) match = at;
    }
    if (match >= 0) {
      this.text = this.text.slice(0, match);
      this.stopMatched = true;
      return this.emitUpTo(match, true);
    }
    return this.emitUpTo(this.text.length - this.heldBack(), false);
  }

  /** Releases held-back text when the output ends for another reason. */
  flush(): string {
    return this.emitUpTo(this.text.length, false).emit;
  }

  private heldBack(): number {
    const pending = this.text.length - this.emitted;
    let hold = 0;
    for (const stop of this.stops) {
      for (let len = Math.min(stop.length - 1, pending); len > hold; len--) {
        if (this.text.endsWith(stop.slice(0, len))) {
          hold = len;
          break;
        }
      }
    }
    return hold;
  }

  private emitUpTo(end: number, stopped: boolean): StopCheck {
    const emit = this.text.slice(this.emitted, end);
    this.emitted = end;
    return { emit, stopped };
  }
}
