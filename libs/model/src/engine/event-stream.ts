/**
 * The stream a generate() call returns: a per-request async queue of token events that the engine pushes to and the
 * caller iterates (event by event, or batches of everything queued); abandoning the iteration cancels the request.
 * Not the engine loop (engine.ts).
 */
import type { TokenEvent, TokenEventStream } from './engine.types';
import type { FramePacer } from './frame-pacer';

/**
 * Per-request async event queue; breaking out of the iteration cancels the request. Iterated event by event,
 * or with batches() as everything queued since the last batch: a step's events of every choice at once, and
 * several steps' when the consumer fell behind (so a slow consumer costs one send per batch, not per token). With a
 * pacer, a batch less than its interval after the previous one waits for the pacer's tick (frame-pacer.ts); the
 * first batch, one after a longer gap, and the stream's end go at once.
 */
export class EventStream implements TokenEventStream {
  private readonly queue: TokenEvent[] = [];
  private done = false;
  private error: Error | null = null;
  private notify: (() => void) | null = null;
  /** Ends a wait for the pacer early: only the stream's end does, new events wait for the tick. */
  private endWait: (() => void) | null = null;

  constructor(private readonly onAbandon: () => void) {}

  push(event: TokenEvent): void {
    this.queue.push(event);
    this.wake();
  }

  end(error: Error | null = null): void {
    this.done = true;
    this.error = error;
    this.wake();
    this.endWait?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TokenEvent> {
    for await (const batch of this.batches()) yield* batch;
  }

  async *batches(pacer?: FramePacer): AsyncIterable<TokenEvent[]> {
    let completed = false;
    let lastBatchAt = -Infinity;
    try {
      for (;;) {
        if (this.queue.length > 0) {
          // A batch within the interval of the last one waits for the tick; after a longer gap (a slow step) it goes now.
          const recent = pacer !== undefined && performance.now() - lastBatchAt < pacer.intervalMs;
          const tick = recent && !this.done ? pacer.tick() : null;
          if (tick) await this.untilTickOrEnd(tick);
          lastBatchAt = performance.now();
          yield this.queue.splice(0);
          continue;
        }
        if (this.done) {
          completed = true;
          if (this.error) throw this.error;
          return;
        }
        await new Promise<void>((resolve) => (this.notify = resolve));
      }
    } finally {
      if (!completed) this.onAbandon();
    }
  }

  private untilTickOrEnd(tick: Promise<void>): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        if (this.endWait === done) this.endWait = null;
        resolve();
      };
      this.endWait = done;
      void tick.then(done);
    });
  }

  private wake(): void {
    const notify = this.notify;
    this.notify = null;
    notify?.();
  }
}
