/**
 * Checkpoints in the `checkpoints` object store: a Hugging Face directory (or a moderation classifier's) is packed into ONE object (a magic
 * line, a JSON header line listing the files, then their bytes back to back; NATS chunks it), named after its
 * version, with the published record as the object's description. Fetching unpacks into a cache folder keyed
 * by the pack's sha256, verified before anything is written. Not the KV of active versions (model-registry.ts).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { StorageType, type NatsConnection, type ObjectStore } from 'nats';
import { OBJECT_STORES, publishedModelSchema, type CheckpointRef, type ModelRole, type PublishedModel } from '@flywheel/contracts';

const MAGIC = 'FLYWHEEL-CKPT-1\n';
/** Training-only files a replica never needs. */
const SKIPPED_FILES = new Set(['optimizer.safetensors', 'training_state.json']);
const COMPLETE_MARKER = '.flywheel-complete';

export interface PackedFile {
  name: string;
  bytes: number;
}

/** Top-level regular files of `dir` (HF checkpoints are flat), sorted by name so a pack is reproducible. */
export function packCheckpoint(dir: string): { data: Buffer; files: PackedFile[] } {
  const names = readdirSync(dir)
    .filter((n) => !SKIPPED_FILES.has(n) && !n.startsWith('.') && statSync(path.join(dir, n)).isFile())
    .sort();
  // A model (Hugging Face config.json) or a moderation classifier (model.json + weights.bin).
  if (!names.includes('config.json') && !names.includes('model.json')) throw new Error(`${dir} is not a checkpoint directory: no config.json (a model) or model.json (a moderation classifier)`);
  const contents = names.map((n) => readFileSync(path.join(dir, n)));
  const files = names.map((name, i) => ({ name, bytes: contents[i]!.length }));
  const header = Buffer.from(`${MAGIC}${JSON.stringify({ files })}\n`);
  return { data: Buffer.concat([header, ...contents]), files };
}

export function unpackCheckpoint(data: Uint8Array, outDir: string): PackedFile[] {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (buf.subarray(0, MAGIC.length).toString() !== MAGIC) throw new Error('not a packed Flywheel checkpoint');
  const headerEnd = buf.indexOf(0x0a, MAGIC.length);
  if (headerEnd < 0) throw new Error('packed checkpoint: header line is cut off');
  const parsed: unknown = JSON.parse(buf.subarray(MAGIC.length, headerEnd).toString());
  const files = publishedModelSchema.shape.files.parse((parsed as { files?: unknown }).files);
  let offset = headerEnd + 1;
  const total = files.reduce((a, f) => a + f.bytes, 0);
  if (offset + total !== buf.length) throw new Error(`packed checkpoint: header lists ${total} bytes, the object holds ${buf.length - offset}`);
  mkdirSync(outDir, { recursive: true });
  for (const f of files) {
    if (f.name !== path.basename(f.name) || f.name.startsWith('.')) throw new Error(`packed checkpoint: bad file name ${JSON.stringify(f.name)}`);
    writeFileSync(path.join(outDir, f.name), buf.subarray(offset, offset + f.bytes));
    offset += f.bytes;
  }
  return files;
}

export async function checkpointStore(nc: NatsConnection): Promise<ObjectStore> {
  return nc.jetstream().views.os(OBJECT_STORES.checkpoints, { storage: StorageType.File });
}

export interface PutCheckpointOptions {
  version: string;
  role: ModelRole;
  dir: string;
  parent?: string | null;
  runId?: string | null;
  exports?: string[];
}

/** Publishes `dir` as `version`; refuses to overwrite a version that exists (versions are immutable). */
export async function putCheckpoint(nc: NatsConnection, o: PutCheckpointOptions): Promise<PublishedModel> {
  const os = await checkpointStore(nc);
  if (await os.info(o.version)) throw new Error(`version ${o.version} is already published`);
  const { data, files } = packCheckpoint(o.dir);
  const record = publishedModelSchema.parse({
    version: o.version,
    role: o.role,
    checkpoint: { object: o.version, sha256: createHash('sha256').update(data).digest('hex'), bytes: data.length },
    parent: o.parent ?? null,
    runId: o.runId ?? null,
    exports: o.exports ?? [],
    files,
    publishedAt: new Date().toISOString(),
  });
  await os.putBlob({ name: o.version, description: JSON.stringify(record) }, data);
  return record;
}

export async function findPublished(nc: NatsConnection, version: string): Promise<PublishedModel | null> {
  const info = await (await checkpointStore(nc)).info(version);
  return info ? parsePublished(info.description) : null;
}

/** Every published version, oldest first. */
export async function listPublished(nc: NatsConnection): Promise<PublishedModel[]> {
  const infos = await (await checkpointStore(nc)).list();
  return infos
    .filter((i) => !i.deleted)
    .map((i) => parsePublished(i.description))
    .filter((p): p is PublishedModel => p !== null)
    .sort((a, b) => a.publishedAt.localeCompare(b.publishedAt));
}

function parsePublished(description: string | undefined): PublishedModel | null {
  if (!description) return null;
  try {
    const r = publishedModelSchema.safeParse(JSON.parse(description));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}

/**
 * The checkpoint as a local directory under `cacheRoot/<sha256>`; downloaded, verified (size and sha256) and
 * unpacked only when not cached. The rename makes a half-written folder impossible to mistake for a whole one.
 */
export async function fetchCheckpoint(nc: NatsConnection, ref: CheckpointRef, cacheRoot: string): Promise<string> {
  const dir = path.join(cacheRoot, ref.sha256);
  if (existsSync(path.join(dir, COMPLETE_MARKER))) return dir;
  const data = await (await checkpointStore(nc)).getBlob(ref.object);
  if (!data) throw new Error(`checkpoint object ${ref.object} is missing from the object store`);
  if (data.byteLength !== ref.bytes) throw new Error(`checkpoint ${ref.object}: ${data.byteLength} bytes, expected ${ref.bytes}`);
  const sha = createHash('sha256').update(data).digest('hex');
  if (sha !== ref.sha256) throw new Error(`checkpoint ${ref.object}: sha256 ${sha}, expected ${ref.sha256}`);
  const tmp = `${dir}.tmp-${process.pid}-${Date.now()}`;
  try {
    unpackCheckpoint(data, tmp);
    writeFileSync(path.join(tmp, COMPLETE_MARKER), `${ref.object}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return dir;
}
