/**
 * Publishing a trained checkpoint as an immutable version in the `checkpoints` object store (with its lineage:
 * parent, run, exports), idempotently: a job that runs again after publishing finds its version there with the
 * same content and moves on; different content under the same name is an error (versions never change). Also the
 * one way every training job ends (register its candidate in the store, then publish it) and how a job whose data
 * names no base version finds the published version it was trained from. Not the promotion (the eval gate, admin).
 */
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import path from 'node:path';
import type { ModelRole } from '@flywheel/contracts';
import { findPublished, listPublished, packCheckpoint, putCheckpoint, readActive, type MeshConnection } from '@flywheel/mesh';
import { registerCandidateVersion, type CandidateToRegister } from '@flywheel/store';
import type { TrainerStore } from './trainer.store';

export interface VersionToPublish {
  version: string;
  role: ModelRole;
  dir: string;
  parent: string | null;
  runId: string | null;
  exports: string[];
}

export async function publishVersion(mesh: MeshConnection, v: VersionToPublish): Promise<void> {
  const nc = await mesh.connected;
  const existing = await findPublished(nc, v.version);
  if (existing) {
    const sha = createHash('sha256').update(packCheckpoint(v.dir).data).digest('hex');
    if (existing.checkpoint.sha256 !== sha) throw new Error(`version ${v.version} is already published with other content`);
    return;
  }
  await putCheckpoint(nc, { version: v.version, role: v.role, dir: v.dir, parent: v.parent, runId: v.runId, exports: v.exports });
}

/**
 * How a finished training job ends: its run and candidate version in the store (one transaction), then its
 * checkpoint published as that version with the run as runId, so the candidate can be promoted (and rolled back)
 * from the admin UI's Models page. Both steps are idempotent, so a job run again after either one repeats it safely.
 */
export async function registerAndPublish(
  store: TrainerStore,
  mesh: MeshConnection,
  candidate: CandidateToRegister & { role: ModelRole },
  lineage: { parent: string | null; exports: string[] },
): Promise<void> {
  await store.use((db) => registerCandidateVersion(db, candidate));
  await publishVersion(mesh, {
    version: candidate.versionId,
    role: candidate.role,
    dir: candidate.checkpoint,
    parent: lineage.parent,
    runId: candidate.trainingRun.id,
    exports: lineage.exports,
  });
}

/**
 * The published version of `role` whose checkpoint is exactly the content of `dir` (a job trained from a published
 * version's files, like the loop's fetched base), preferring the active one, else the first published; null for a
 * directory never published. Only versions whose files all match `dir`'s by name and size cost a hash of `dir`.
 */
export async function publishedVersionOf(mesh: MeshConnection, role: ModelRole, dir: string): Promise<string | null> {
  const nc = await mesh.connected;
  const sizeOf = (name: string): number | null => {
    try {
      const st = statSync(path.join(dir, name));
      return st.isFile() ? st.size : null;
    } catch {
      return null;
    }
  };
  const sameFiles = (await listPublished(nc)).filter((p) => p.role === role && p.files.every((f) => sizeOf(f.name) === f.bytes));
  if (sameFiles.length === 0) return null;
  const sha = createHash('sha256').update(packCheckpoint(dir).data).digest('hex');
  const same = sameFiles.filter((p) => p.checkpoint.sha256 === sha);
  const active = (await readActive(nc, role))?.version;
  return same.find((p) => p.version === active)?.version ?? same[0]?.version ?? null;
}
