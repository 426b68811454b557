/**
 * The stream a generate() call returns: a per-request async queue of token events that the engine pushes to and the
 * caller iterates (event by event, or batches of everything queued); abandoning the iteration cancels the request.
 * Not the engine loop (engine.ts).
 */
import type { TokenEvent, TokenEventStream } from './engine.types';

/**
 * Per-request async event queue; breaking out of the iteration cancels the request. Iterated event by event,
 * or with batches() as everything queued since the last batch: a step's events of every choice at once, and
 * several steps' when the consumer fell behind (so a slow consumer costs one send per batch, not per token).
 */
export class EventStream implements TokenEventStream {
  private readonly queue: TokenEvent[] = [];
  private done = false;
  private error: Error | null = null;
  private notify: (() => void) | null = null;

  constructor(private readonly onAbandon: () => void) {}

  push(event: TokenEvent): void {
    this.queue.push(event);
    this.wake();
  }

  end(error: Error | null = null): void {
    this.done = true;
    this.error = error;
    this.wake();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TokenEvent> {
    for await (const batch of this.batches()) yield* batch;
  }

  async *batches(): AsyncIterable<TokenEvent[]> {
    let completed = false;
    try {
      for (;;) {
        if (this.queue.length > 0) {
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

  private wake(): void {
    const notify = this.notify;
    this.notify = null;
    notify?.();
  }
}
