/**
 * The gateway's handle on the store: opens it (connect + migrate) in the background at boot and keeps
 * retrying with backoff while the database is unreachable, so the gateway boots and serves without it.
 * With no DATABASE_URL at all it never opens and says why (the launcher hands every service the embedded
 * Postgres's URL). `get()` answers the open store or throws StoreUnavailableError; nothing here queries anything.
 * Closed at shutdown after the modules that use it (StoreModule sits below them).
 */
import { Logger, type OnApplicationShutdown } from '@nestjs/common';
import { NO_DATABASE_URL, openStore, type Store } from '@flywheel/store';
import { StoreUnavailableError } from './store.errors';

export class StoreHandle implements OnApplicationShutdown {
  private readonly logger = new Logger('Store');
  private store: Store | null = null;
  private closed = false;
  private lastError = 'not opened yet';
  /** Resolves once the store is open and migrated (never rejects; retries until closed; null without a URL). */
  readonly opened: Promise<Store | null>;

  constructor(
    private readonly url: string | null,
    private readonly retryMaxMs: number,
  ) {
    if (url === null) {
      this.lastError = NO_DATABASE_URL;
      this.logger.warn(`the store is off: ${NO_DATABASE_URL}`);
      this.opened = Promise.resolve(null);
    } else {
      this.opened = this.openWithRetry(url);
    }
  }

  get(): Store {
    if (!this.store) throw new StoreUnavailableError(`the store is not open: ${this.lastError}`);
    return this.store;
  }

  onApplicationShutdown(): Promise<void> {
    return this.close();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.store?.close().catch(() => undefined);
    this.store = null;
  }

  private async openWithRetry(url: string): Promise<Store | null> {
    let delayMs = 250;
    for (let attempt = 1; !this.closed; attempt++) {
      try {
        const store = await openStore({ url }, {
          onIdleError: (err) => this.logger.warn(`idle database connection failed: ${err.message}`),
        });
        if (this.closed) {
          await store.close();
          return null;
        }
        this.store = store;
        this.logger.log(`store open on ${new URL(url).host}, migrations applied`);
        return store;
      } catch (err) {
        this.lastError = err instanceof Error ? err.message : String(err);
        // Log the first failure and then every tenth, not every retry of a long outage.
        if (attempt === 1 || attempt % 10 === 0) this.logger.warn(`store not available (attempt ${attempt}, retrying): ${this.lastError}`);
        await new Promise((r) => setTimeout(r, delayMs));
        delayMs = Math.min(this.retryMaxMs, delayMs * 2);
      }
    }
    return null;
  }
}
