/**
 * Where a replica learns which version of its role (policy, reward) to serve: the role's `models` KV entry and the
 * checkpoint it names, fetched (verified) into `<state dir>/checkpoints/<sha256>`. A thin wrapper over NATS so
 * services are testable with a fake; the KV and object-store logic is model-registry.ts and checkpoint-store.ts,
 * the swapping served-versions.ts.
 */
import path from 'node:path';
import type { Provider } from '@nestjs/common';
import type { ActiveModelEntry, ModelRole } from '@flywheel/contracts';
import type { CommonConfig } from '@flywheel/config';
import { fetchCheckpoint } from './checkpoint-store';
import { MeshConnection } from './mesh.connection';
import { SERVICE_CONFIG } from './mesh-core.module';
import { readActive, watchActive } from './model-registry';

export interface ActiveModelSourceLike {
  /** The entry now in the KV, or null (none, or NATS not reachable within `waitMs`). */
  current(waitMs: number): Promise<ActiveModelEntry | null>;
  /** The current entry, then every new one, until the signal aborts. */
  watch(signal: AbortSignal): AsyncIterable<ActiveModelEntry>;
  /** A local directory holding the entry's verified checkpoint. */
  fetch(entry: ActiveModelEntry): Promise<string>;
}

export class ActiveModelSource implements ActiveModelSourceLike {
  constructor(
    private readonly mesh: MeshConnection,
    readonly role: ModelRole,
    /** Fetched checkpoints land in `<cacheRoot>/<sha256>`. */
    private readonly cacheRoot: string,
  ) {}

  async current(waitMs: number): Promise<ActiveModelEntry | null> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), waitMs)));
    try {
      const nc = await Promise.race([this.mesh.connected, timeout]);
      if (!nc) return null;
      return await Promise.race([readActive(nc, this.role), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async *watch(signal: AbortSignal): AsyncIterable<ActiveModelEntry> {
    const nc = await this.mesh.connected;
    yield* watchActive(nc, this.role, signal);
  }

  async fetch(entry: ActiveModelEntry): Promise<string> {
    const nc = await this.mesh.connected;
    return fetchCheckpoint(nc, entry.checkpoint, this.cacheRoot);
  }
}

/** The Nest provider of a service's source for `role` (token: the ActiveModelSource class), caching under the state dir. */
export function activeModelSourceProvider(role: ModelRole): Provider {
  return {
    provide: ActiveModelSource,
    useFactory: (mesh: MeshConnection, config: CommonConfig) => new ActiveModelSource(mesh, role, path.resolve(config.stateDir, 'checkpoints')),
    inject: [MeshConnection, SERVICE_CONFIG],
  };
}
