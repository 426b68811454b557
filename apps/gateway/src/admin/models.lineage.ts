/**
 * Lineage follower: every gateway replica watches the `checkpoints` object store (published → `candidate` row)
 * and the `models` KV keys (active entry → `active` row, the previous one `retired`) and writes the
 * `model_versions` table. Following the mesh, rather than writing in the promote route, records promotions
 * made by the CLI, the admin API or the trainer alike, and the writes are idempotent, so replicas may race
 * and a restart replays safely. While the store is down a write is retried; nothing is skipped.
 */
import { Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import type { NatsConnection } from 'nats';
import { MODEL_ROLES, publishedModelSchema, type ModelRole } from '@flywheel/contracts';
import { checkpointStore, MeshConnection, watchActive } from '@flywheel/mesh';
import { recordActiveVersion, recordPublishedVersion, type LineageFacts, type Store } from '@flywheel/store';
import { StoreHandle } from '../store/store.handle';

const RETRY_MS = 2_000;

@Injectable()
export class ModelLineageFollower implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('model-lineage');
  private readonly stop = new AbortController();
  private lastError = '';

  constructor(
    private readonly mesh: MeshConnection,
    private readonly store: StoreHandle,
  ) {}

  onModuleInit(): void {
    void this.mesh.connected.then(
      (nc) => {
        void this.loop(() => this.followObjects(nc));
        for (const role of MODEL_ROLES) void this.loop(() => this.followRole(nc, role));
      },
      () => undefined,
    );
  }

  onApplicationShutdown(): void {
    this.stop.abort();
  }

  private async loop(follow: () => Promise<void>): Promise<void> {
    while (!this.stop.signal.aborted) {
      try {
        await follow();
      } catch (err) {
        this.warn(err);
      }
      await this.sleep();
    }
  }

  private async followRole(nc: NatsConnection, role: ModelRole): Promise<void> {
    for await (const e of watchActive(nc, role, this.stop.signal)) {
      const facts: LineageFacts = { version: e.version, role, parent: e.parent, runId: e.runId, exports: e.exports, checkpoint: e.checkpoint.object, sha256: e.checkpoint.sha256 };
      await this.write((s) => recordActiveVersion(s.db, facts, new Date(e.promotedAt)));
    }
  }

  private async followObjects(nc: NatsConnection): Promise<void> {
    const it = await (await checkpointStore(nc)).watch({ includeHistory: true, ignoreDeletes: true });
    const stop = () => it.stop();
    this.stop.signal.addEventListener('abort', stop, { once: true });
    try {
      for await (const info of it) {
        if (!info || info.deleted || !info.description) continue;
        const parsed = (() => {
          try {
            return publishedModelSchema.safeParse(JSON.parse(info.description));
          } catch {
            return null;
          }
        })();
        if (!parsed?.success) continue;
        const p = parsed.data;
        const facts: LineageFacts = { version: p.version, role: p.role, parent: p.parent, runId: p.runId, exports: p.exports, checkpoint: p.checkpoint.object, sha256: p.checkpoint.sha256 };
        await this.write((s) => recordPublishedVersion(s.db, facts));
      }
    } finally {
      this.stop.signal.removeEventListener('abort', stop);
    }
  }

  /** Retries until the store takes the write (or the gateway stops): lineage must not have holes. */
  private async write(fn: (store: Store) => Promise<void>): Promise<void> {
    while (!this.stop.signal.aborted) {
      try {
        await fn(this.store.get());
        this.lastError = '';
        return;
      } catch (err) {
        this.warn(err);
        await this.sleep();
      }
    }
  }

  private warn(err: unknown): void {
    const m = err instanceof Error ? err.message : String(err);
    if (m !== this.lastError) this.logger.warn(`recording model lineage: ${m}; retrying`);
    this.lastError = m;
  }

  private sleep(): Promise<void> {
    return new Promise((r) => setTimeout(r, RETRY_MS).unref());
  }
}
