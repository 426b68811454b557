/**
 * Whether a NATS connection can carry a request right now, and who to tell when it drops, followed from
 * the connection's status events. nats.js 2.x keeps nothing published while it is disconnected (every
 * reconnect attempt resets its outbound buffer), and a reply published to us while we are away is lost
 * too: a request sent into that gap waits out its whole timeout. Not the reconnect policy
 * (nats.connection.ts) nor the readiness report (mesh.connection.ts).
 */
import type { NatsConnection } from 'nats';

const links = new WeakMap<NatsConnection, NatsLink>();

export class NatsLink {
  private up: boolean;
  private readonly dropListeners = new Set<() => void>();

  private constructor(nc: NatsConnection) {
    // Taken as up when first asked: MeshConnection (and the tests) ask right after connect().
    this.up = !nc.isClosed();
    void this.follow(nc);
  }

  /** One per connection, so every MeshClient made on it shares one status listener. */
  static of(nc: NatsConnection): NatsLink {
    let link = links.get(nc);
    if (!link) {
      link = new NatsLink(nc);
      links.set(nc, link);
    }
    return link;
  }

  get connected(): boolean {
    return this.up;
  }

  /** Calls `fn` once, at the next disconnect (or close); returns the function that stops listening. */
  onDrop(fn: () => void): () => void {
    this.dropListeners.add(fn);
    return () => this.dropListeners.delete(fn);
  }

  private async follow(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') this.drop();
      else if (s.type === 'reconnect') this.up = true;
    }
    this.drop();
  }

  private drop(): void {
    this.up = false;
    const listeners = [...this.dropListeners];
    this.dropListeners.clear();
    for (const fn of listeners) fn();
  }
}
