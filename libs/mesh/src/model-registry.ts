/**
 * The `models` KV bucket: key `<role>` holds the active version's entry. Promotion and rollback are each ONE
 * put; the bucket's history (10) is what a rollback reads. Replicas follow the key with `watchActive`.
 * Not the checkpoint bytes (checkpoint-store.ts) and not the database lineage (libs/store).
 */
import type { KV, KvEntry, NatsConnection } from 'nats';
import { activeModelEntrySchema, KV_BUCKETS, type ActiveModelEntry, type ModelRole, type ModelVersionList, type PublishedModel } from '@flywheel/contracts';
import { findPublished, listPublished } from './checkpoint-store';

export async function modelsKv(nc: NatsConnection): Promise<KV> {
  return nc.jetstream().views.kv(KV_BUCKETS.models, { history: 10 });
}

function decode(e: KvEntry): ActiveModelEntry | null {
  if (e.operation !== 'PUT' || e.length === 0) return null;
  try {
    const r = activeModelEntrySchema.safeParse(e.json());
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

export async function readActive(nc: NatsConnection, role: ModelRole): Promise<ActiveModelEntry | null> {
  const e = await (await modelsKv(nc)).get(role);
  return e ? decode(e) : null;
}

/** The one write that makes `entry` the role's active version. */
export async function promote(nc: NatsConnection, role: ModelRole, entry: ActiveModelEntry): Promise<ActiveModelEntry> {
  const parsed = activeModelEntrySchema.parse(entry);
  await (await modelsKv(nc)).put(role, JSON.stringify(parsed));
  return parsed;
}

export function entryFor(p: PublishedModel, by: string, reason: string): ActiveModelEntry {
  return {
    version: p.version,
    checkpoint: p.checkpoint,
    parent: p.parent,
    runId: p.runId,
    exports: p.exports,
    promotedAt: new Date().toISOString(),
    promotedBy: by,
    reason,
    action: 'promote',
  };
}

/** The role's promotions still in the KV history, oldest first, with each rollback undoing the one before. */
export async function activeStack(nc: NatsConnection, role: ModelRole): Promise<ActiveModelEntry[]> {
  const it = await (await modelsKv(nc)).history({ key: role });
  const stack: ActiveModelEntry[] = [];
  for await (const e of it) {
    const d = decode(e);
    if (!d) continue;
    if (d.action === 'rollback') {
      stack.pop();
      // The rollback's target is already on top; if history was trimmed, it is not: restore it.
      if (stack.at(-1)?.version !== d.version) stack.push(d);
    } else stack.push(d);
  }
  return stack;
}

/** Writes back the entry that was active before the current one (one put); null when there is none. */
export async function rollback(nc: NatsConnection, role: ModelRole, by: string, reason = 'rollback'): Promise<ActiveModelEntry | null> {
  const stack = await activeStack(nc, role);
  const current = stack.at(-1);
  const previous = stack.at(-2);
  if (!current || !previous) return null;
  return promote(nc, role, {
    ...previous,
    promotedAt: new Date().toISOString(),
    promotedBy: by,
    reason: `${reason} from ${current.version}`,
    action: 'rollback',
  });
}

/**
 * Yields the role's current entry (if any) and then every new one, until `signal` aborts. Entries that do
 * not parse are skipped (an operator's hand-written value must not kill a replica).
 */
export async function* watchActive(nc: NatsConnection, role: ModelRole, signal: AbortSignal): AsyncGenerator<ActiveModelEntry> {
  const it = await (await modelsKv(nc)).watch({ key: role, ignoreDeletes: true });
  const stop = () => it.stop();
  signal.addEventListener('abort', stop, { once: true });
  try {
    for await (const e of it) {
      const d = decode(e);
      if (d) yield d;
    }
  } finally {
    signal.removeEventListener('abort', stop);
    it.stop();
  }
}

/** Published versions of the role with their state: active (in the KV now), previous (a rollback's target), or candidate. */
export async function listModelVersions(nc: NatsConnection, role: ModelRole): Promise<ModelVersionList> {
  const [published, stack] = await Promise.all([listPublished(nc), activeStack(nc, role)]);
  const active = stack.at(-1) ?? null;
  const previous = stack.at(-2)?.version ?? null;
  return {
    role,
    active: active?.version ?? null,
    previous,
    activeEntry: active,
    versions: published
      .filter((p) => p.role === role)
      .map((p) => ({
        version: p.version,
        parent: p.parent,
        runId: p.runId,
        exports: p.exports,
        bytes: p.checkpoint.bytes,
        sha256: p.checkpoint.sha256,
        publishedAt: p.publishedAt,
        state: p.version === active?.version ? 'active' : p.version === previous ? 'previous' : 'candidate',
      })),
  };
}

/** Promotes a published version of the role (one KV put); an unknown version or a wrong role is an error. */
export async function promoteVersion(nc: NatsConnection, role: ModelRole, version: string, by: string, reason: string): Promise<ActiveModelEntry> {
  const published = await findPublished(nc, version);
  if (!published) throw new ModelVersionError('not_found', `version ${version} is not published (flywheel models publish first)`);
  if (published.role !== role) throw new ModelVersionError('wrong_role', `version ${version} is a ${published.role} model, not ${role}`);
  return promote(nc, role, entryFor(published, by, reason));
}

export class ModelVersionError extends Error {
  constructor(
    readonly code: 'not_found' | 'wrong_role' | 'nothing_to_roll_back',
    message: string,
  ) {
    super(message);
  }
}
