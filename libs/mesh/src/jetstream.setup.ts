/**
 * Idempotent JetStream setup: the durable record streams, the KV bucket of active model versions and
 * the checkpoint object store. A second boot (or a second replica) changes nothing that already exists.
 */
import { RetentionPolicy, StorageType, type NatsConnection, type StreamConfig } from 'nats';
import { KV_BUCKETS, OBJECT_STORES, STREAMS } from '@flywheel/contracts';

const STREAM_DEFAULTS: Partial<StreamConfig> = {
  retention: RetentionPolicy.Limits,
  storage: StorageType.File,
  // Dedup window: a retried publish with the same Nats-Msg-Id (the record id) is stored once.
  duplicate_window: 2 * 60 * 1_000_000_000,
  max_age: 0,
  num_replicas: 1,
};

export interface JetStreamSetupResult {
  created: string[];
  existing: string[];
}

export async function ensureJetStream(nc: NatsConnection): Promise<JetStreamSetupResult> {
  const jsm = await nc.jetstreamManager();
  const created: string[] = [];
  const existing: string[] = [];
  for (const stream of Object.values(STREAMS)) {
    const want = { ...STREAM_DEFAULTS, name: stream.name, subjects: [...stream.subjects] };
    try {
      const info = await jsm.streams.info(stream.name);
      const same =
        JSON.stringify([...info.config.subjects].sort()) === JSON.stringify([...want.subjects].sort()) &&
        info.config.duplicate_window === want.duplicate_window;
      // Only subjects and the dedup window are ours to reconcile; operators may tune the rest.
      if (!same) await jsm.streams.update(stream.name, { ...info.config, subjects: want.subjects, duplicate_window: want.duplicate_window });
      existing.push(`stream:${stream.name}`);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await jsm.streams.add(want);
      created.push(`stream:${stream.name}`);
    }
  }
  const js = nc.jetstream();
  const kvName = `KV_${KV_BUCKETS.models}`;
  const hadKv = await streamExists(nc, kvName);
  await js.views.kv(KV_BUCKETS.models, { history: 10 });
  (hadKv ? existing : created).push(`kv:${KV_BUCKETS.models}`);
  const osName = `OBJ_${OBJECT_STORES.checkpoints}`;
  const hadOs = await streamExists(nc, osName);
  await js.views.os(OBJECT_STORES.checkpoints, { storage: StorageType.File });
  (hadOs ? existing : created).push(`os:${OBJECT_STORES.checkpoints}`);
  return { created, existing };
}

async function streamExists(nc: NatsConnection, name: string): Promise<boolean> {
  const jsm = await nc.jetstreamManager();
  try {
    await jsm.streams.info(name);
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { code?: string; api_error?: { err_code?: number }; message?: string };
  return e?.api_error?.err_code === 10059 || e?.code === '404' || /stream not found/i.test(String(e?.message));
}
