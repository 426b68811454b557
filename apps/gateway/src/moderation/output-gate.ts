/**
 * One choice's generated text on its way to the client. Each policy token frame goes through the
 * in-process StreamModerator, and of what it releases only whole tokens are sent, each with its
 * logprobs, so a chunk's text and logprobs describe the same tokens. When the moderator blocks, the
 * text before the hit is sent (the partial token too, but not its logprobs) and nothing after it.
 * Plain class, no I/O; the generation service owns the stream and the finish_reason.
 */
import type { ModerationVerdictSummary, TokenLogprob } from '@flywheel/contracts';
import type { StreamModerator, StreamStep } from '@flywheel/moderation';
import { verdictSummaryOf } from './verdict-summary';

export interface GateStep {
  /** Text to send now ('' when nothing), continuing exactly where the last step's text ended. */
  text: string;
  /** Logprobs of the tokens whose text has now been sent in full. */
  logprobs: TokenLogprob[];
  /** The choice was cut by the content filter; no later step sends anything. */
  blocked: boolean;
}

export interface OutputSummary extends ModerationVerdictSummary {
  /** UTF-16 offset into the generated text where it was cut, null when it was not. */
  cutOffset: number | null;
  generatedChars: number;
}

export class OutputGate {
  private generated = '';
  private sent = 0;
  private cut: number | null = null;
  /** Token frames not yet sent in full: where each ends in `generated`, and its logprobs. */
  private readonly pending: Array<{ end: number; logprobs: readonly TokenLogprob[] }> = [];

  constructor(
    private readonly stream: StreamModerator,
    /** Seconds each moderator push took (the latency the output check adds per delta). */
    private readonly observe: (seconds: number) => void = () => undefined,
  ) {}

  get blocked(): boolean {
    return this.cut !== null;
  }

  push(text: string, logprobs: readonly TokenLogprob[] = []): GateStep {
    if (this.cut !== null) return { text: '', logprobs: [], blocked: true };
    this.generated += text;
    this.pending.push({ end: this.generated.length, logprobs });
    const step = this.timed(() => this.stream.push(text));
    if (step.blocked) return this.cutAt(step);
    let upTo = this.sent;
    for (const frame of this.pending) {
      if (frame.end > step.releasedChars) break;
      upTo = frame.end;
    }
    return this.sendUpTo(upTo, false);
  }

  /**
   * The policy finished the choice: the held-back tail goes out once the classifier has read what it had not yet
   * (it may still block, cutting as a push does).
   */
  end(): GateStep {
    if (this.cut !== null) return { text: '', logprobs: [], blocked: true };
    const step = this.timed(() => this.stream.end());
    if (step.blocked) return this.cutAt(step);
    return this.sendUpTo(this.generated.length, false);
  }

  /** The moderator's step, its time observed (the latency the output check adds). */
  private timed(check: () => StreamStep): StreamStep {
    const started = performance.now();
    const step = check();
    this.observe((performance.now() - started) / 1000);
    return step;
  }

  /** The content filter cut the choice: the text before the hit goes out, nothing after it ever does. */
  private cutAt(step: StreamStep): GateStep {
    this.cut = step.cutOffset ?? this.sent;
    return this.sendUpTo(Math.max(this.sent, this.cut), true);
  }

  summary(): OutputSummary {
    return { ...verdictSummaryOf(this.stream.summary()), cutOffset: this.cut, generatedChars: this.generated.length };
  }

  private sendUpTo(upTo: number, blocked: boolean): GateStep {
    const text = upTo > this.sent ? this.generated.slice(this.sent, upTo) : '';
    this.sent = Math.max(this.sent, upTo);
    const logprobs: TokenLogprob[] = [];
    while (this.pending.length > 0 && this.pending[0]!.end <= this.sent) logprobs.push(...this.pending.shift()!.logprobs);
    return { text, logprobs, blocked };
  }
}
