/**
 * Publishing a trained checkpoint as an immutable version in the `checkpoints` object store (with its lineage:
 * parent, run, exports), idempotently: a job that runs again after publishing finds its version there with the
 * same content and moves on; different content under the same name is an error (versions never change).
 */
import type { ModelRole } from '@flywheel/contracts';
import { findPublished, packCheckpoint, putCheckpoint, type MeshConnection } from '@flywheel/mesh';
import { createHash } from 'node:crypto';

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
