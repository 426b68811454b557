/**
 * Where a policy replica learns which version to serve: the `models` KV entry of role `policy` and the
 * checkpoint it names, fetched into `<state dir>/checkpoints/<sha256>`. A thin wrapper over NATS so the engine
 * service is testable with a fake; the KV/object-store logic itself lives in @flywheel/mesh.
 */
import path from 'node:path';
import { Inject, Injectable } from '@nestjs/common';
import type { ActiveModelEntry } from '@flywheel/contracts';
import type { PolicyConfig } from '@flywheel/config';
import { fetchCheckpoint, MeshConnection, readActive, SERVICE_CONFIG, watchActive } from '@flywheel/mesh';

export interface ActiveModelSourceLike {
  /** The entry now in the KV, or null (none, or NATS not reachable within `waitMs`). */
  current(waitMs: number): Promise<ActiveModelEntry | null>;
  /** The current entry, then every new one, until the signal aborts. */
  watch(signal: AbortSignal): AsyncIterable<ActiveModelEntry>;
  /** A local directory holding the entry's verified checkpoint. */
  fetch(entry: ActiveModelEntry): Promise<string>;
}

@Injectable()
export class ActiveModelSource implements ActiveModelSourceLike {
  constructor(
    private readonly mesh: MeshConnection,
    @Inject(SERVICE_CONFIG) private readonly config: PolicyConfig,
  ) {}

  async current(waitMs: number): Promise<ActiveModelEntry | null> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), waitMs)));
    try {
      const nc = await Promise.race([this.mesh.connected, timeout]);
      if (!nc) return null;
      return await Promise.race([readActive(nc, 'policy'), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async *watch(signal: AbortSignal): AsyncIterable<ActiveModelEntry> {
    const nc = await this.mesh.connected;
    yield* watchActive(nc, 'policy', signal);
  }

  async fetch(entry: ActiveModelEntry): Promise<string> {
    const nc = await this.mesh.connected;
    return fetchCheckpoint(nc, entry.checkpoint, path.resolve(this.config.stateDir, 'checkpoints'));
  }
}
