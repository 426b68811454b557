/**
 * One clock for the streamed frames of every request an engine serves: a stream whose next frame would follow its
 * last one within the interval waits for the pacer's next tick, and every stream waiting is released by the same
 * tick (a frame after a longer gap, a request's first and its end go at once: event-stream.ts). A model
 * that steps faster than the interval then sends a few tokens per frame instead of a message per step, and the
 * requests of one batch still go out together (one wake-up of the gateway for all of them, as one step's frames do
 * unpaced). A clock per request would spread them over the interval and wake the gateway once per request.
 * Not the event queue (event-stream.ts) nor what a frame holds (the policy service).
 */
export class FramePacer {
  private waiters: Array<() => void> = [];
  private timer: NodeJS.Timeout | null = null;

  /** intervalMs 0: no pacing (tick() answers null and nothing waits). */
  constructor(readonly intervalMs: number) {
    if (!(intervalMs >= 0) || !Number.isFinite(intervalMs)) throw new RangeError(`intervalMs must be a finite number >= 0 (got ${intervalMs})`);
  }

  /**
   * The next tick: one interval after the first waiter since the last tick arrived (the clock only runs while
   * someone waits), or null when not pacing.
   */
  tick(): Promise<void> | null {
    if (this.intervalMs === 0) return null;
    return new Promise<void>((resolve) => {
      this.waiters.push(resolve);
      // unref: a pending tick alone never keeps the process up (a stream ended early no longer waits for it).
      this.timer ??= setTimeout(() => this.fire(), this.intervalMs).unref();
    });
  }

  private fire(): void {
    this.timer = null;
    const waiters = this.waiters;
    this.waiters = [];
    for (const release of waiters) release();
  }
}
