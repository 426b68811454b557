/**
 * The model versions a replica holds while it follows its role's `models` KV entry: the active one takes new work;
 * one switched away from finishes the work pinned to it and is released after its last piece. A new entry is
 * loaded beside the active version and switched to, or refused (fetch, verify or load failed) while the old one
 * keeps serving. Exports `flywheel_<role>_swaps_total{outcome="ok|failed"}` and `flywheel_<role>_active_version`.
 * What a loaded version is (an engine, a scorer) and how work runs on it stay in each service.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ActiveModelEntry, ModelRole } from '@flywheel/contracts';
import type { ActiveModelSourceLike } from './active-model.source';

/** How long boot waits for NATS to read the KV entry before serving the fallback (the watch swaps later). */
const BOOT_KV_WAIT_MS = 3_000;
const WATCH_RETRY_MS = 2_000;
/** Written out so dashboards and the deploy test find every name by grep. */
const METRIC_NAMES: Record<ModelRole, { swaps: string; activeVersion: string }> = {
  policy: { swaps: 'flywheel_policy_swaps_total', activeVersion: 'flywheel_policy_active_version' },
  reward: { swaps: 'flywheel_reward_swaps_total', activeVersion: 'flywheel_reward_active_version' },
  moderation: { swaps: 'flywheel_moderation_swaps_total', activeVersion: 'flywheel_moderation_active_version' },
};

export interface ServedVersionsLogger {
  log(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export interface ServedVersionsOptions<S> {
  role: ModelRole;
  source: ActiveModelSourceLike;
  registry: Registry;
  logger: ServedVersionsLogger;
  /** Fetches (verified) and loads an entry's checkpoint; throws when it cannot be served. */
  load(entry: ActiveModelEntry): Promise<S>;
  /** Frees a version no longer served: once, after its last pinned piece of work (or at close). */
  release(slot: S): void | Promise<void>;
}

export class ServedVersions<S extends { readonly version: string }> {
  private current: S | null = null;
  /** Pieces of work pinned to each version that has any. */
  private readonly pinned = new Map<S, number>();
  /** Versions switched away from that still have pinned work. */
  private readonly draining = new Set<S>();
  private readonly stopped = new AbortController();
  private readonly swaps: Counter<'outcome'>;
  private readonly activeVersion: Gauge<'version'>;

  constructor(private readonly o: ServedVersionsOptions<S>) {
    const { role, registry } = o;
    const names = METRIC_NAMES[role];
    this.swaps = new Counter({ name: names.swaps, help: `Hot swaps of the served ${role} version, by outcome (ok, failed)`, labelNames: ['outcome'], registers: [registry] });
    this.activeVersion = new Gauge({ name: names.activeVersion, help: `The ${role} version this replica serves (label), at value 1`, labelNames: ['version'], registers: [registry] });
  }

  get active(): S | null {
    return this.current;
  }

  /** Every version still loaded: those draining, then the active one. */
  live(): S[] {
    return [...this.draining, ...(this.current ? [this.current] : [])];
  }

  /**
   * Boot: serves the KV's active entry if it loads, else what `fallback` loads (the configured model; null: none),
   * then follows the KV for the life of the replica. Resolves with what is served once that is decided.
   */
  async start(fallback: () => Promise<S | null>, fallbackName: string): Promise<S | null> {
    const { role, logger } = this.o;
    const entry = await this.o.source.current(BOOT_KV_WAIT_MS).catch((err: unknown) => {
      logger.warn(`cannot read the active ${role} version: ${message(err)}; serving ${fallbackName}`);
      return null;
    });
    let slot: S | null = null;
    if (entry) {
      slot = await this.o.load(entry).catch((err: unknown) => {
        logger.error(`cannot load active ${role} version ${entry.version}: ${message(err)}; serving ${fallbackName}`);
        return null;
      });
    }
    slot ??= await fallback();
    if (slot && this.stopped.signal.aborted) {
      await this.release(slot);
      return null;
    }
    if (slot) this.switchTo(slot);
    void this.follow();
    return slot;
  }

  /** Loads the entry beside the active version and switches to it; a failure is logged and the old version stays. */
  async swap(entry: ActiveModelEntry): Promise<boolean> {
    const { role, logger } = this.o;
    const started = Date.now();
    try {
      const slot = await this.o.load(entry);
      if (this.stopped.signal.aborted) {
        await this.release(slot);
        return false;
      }
      const from = this.current?.version ?? null;
      this.switchTo(slot);
      this.swaps.inc({ outcome: 'ok' });
      logger.log(`swapped ${role} ${from} → ${entry.version} (${entry.reason}, by ${entry.promotedBy}) in ${Date.now() - started} ms`);
      return true;
    } catch (err) {
      this.swaps.inc({ outcome: 'failed' });
      logger.error(`refused ${role} version ${entry.version}: ${message(err)}; still serving ${this.current?.version ?? 'nothing'}`);
      return false;
    }
  }

  /** The active version, held until `unpin` even if a swap retires it meanwhile; null while none is served. */
  pin(): S | null {
    const slot = this.current;
    if (slot) this.pinned.set(slot, (this.pinned.get(slot) ?? 0) + 1);
    return slot;
  }

  unpin(slot: S): void {
    const left = (this.pinned.get(slot) ?? 1) - 1;
    if (left > 0) this.pinned.set(slot, left);
    else this.pinned.delete(slot);
    this.releaseIfIdle(slot);
  }

  /** Stops following and releases every version (shutdown: pinned work is not waited for). */
  async close(): Promise<void> {
    this.stopped.abort();
    const slots = this.live();
    this.current = null;
    this.draining.clear();
    await Promise.all(slots.map((s) => this.release(s)));
  }

  /** Hands every KV entry to `swap`, one at a time; a broken watch (NATS down, no JetStream) is retried. */
  private async follow(): Promise<void> {
    const signal = this.stopped.signal;
    let lastError = '';
    while (!signal.aborted) {
      try {
        for await (const entry of this.o.source.watch(signal)) {
          lastError = '';
          if (signal.aborted) return;
          if (entry.version !== this.current?.version) await this.swap(entry);
        }
      } catch (err) {
        const m = message(err);
        if (m !== lastError) this.o.logger.warn(`watching the active ${this.o.role} version failed: ${m}; retrying`);
        lastError = m;
      }
      await new Promise((r) => setTimeout(r, WATCH_RETRY_MS).unref());
    }
  }

  private switchTo(slot: S): void {
    const old = this.current;
    this.current = slot;
    this.activeVersion.reset();
    this.activeVersion.set({ version: slot.version }, 1);
    if (old) {
      this.draining.add(old);
      this.releaseIfIdle(old);
    }
  }

  private releaseIfIdle(slot: S): void {
    if (!this.draining.has(slot) || this.pinned.has(slot)) return;
    this.draining.delete(slot);
    void this.release(slot);
  }

  private async release(slot: S): Promise<void> {
    try {
      await this.o.release(slot);
    } catch (err) {
      this.o.logger.warn(`releasing ${this.o.role} version ${slot.version}: ${message(err)}`);
    }
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
