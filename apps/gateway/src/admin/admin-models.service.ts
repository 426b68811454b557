/**
 * The admin API's model versions: list what is published and active, promote a version, roll back. Each
 * write is the one KV put of @flywheel/mesh (the same as `flywheel models`); policy replicas hot-swap on it
 * and the lineage follower records it in the store. No database access here.
 */
import { Injectable } from '@nestjs/common';
import type { NatsConnection } from 'nats';
import { z } from 'zod';
import { modelPromoteBodySchema, modelRoleSchema, modelRollbackBodySchema, versionGateSchema,
  moderationGateSchema, type ActiveModelEntry, type ModelVersionList } from '@flywheel/contracts';
import { listModelVersions, MeshConnection, ModelVersionError, promoteVersion, rollback } from '@flywheel/mesh';
import { fromZodError, OpenAiError } from '../http/openai-error';
import { StoreHandle } from '../store/store.handle';

@Injectable()
export class AdminModelsService {
  constructor(
    private readonly mesh: MeshConnection,
    private readonly store: StoreHandle,
  ) {}

  async list(query: unknown): Promise<ModelVersionList> {
    const role = parse(z.object({ role: modelRoleSchema.default('policy') }), query ?? {}).role;
    const list = await this.withNats((nc) => listModelVersions(nc, role));
    return { ...list, versions: await this.withGates(list.versions) };
  }

  /** Each version's eval-gate evidence from its model_versions row; the list stands without it while the store is down. */
  private async withGates(versions: ModelVersionList['versions']): Promise<ModelVersionList['versions']> {
    if (versions.length === 0) return versions;
    let rows: Array<{ id: string; metrics: unknown }>;
    try {
      rows = await this.store.get().db.selectFrom('model_versions').select(['id', 'metrics']).where('id', 'in', versions.map((v) => v.version)).execute();
    } catch {
      return versions;
    }
    const gates = new Map<string, Pick<ModelVersionList['versions'][number], 'gate' | 'moderation_gate'>>();
    for (const row of rows) {
      const evidence = (row.metrics as { eval?: unknown } | null)?.eval;
      const policy = versionGateSchema.safeParse(evidence);
      const moderation = moderationGateSchema.safeParse(evidence);
      if (policy.success) gates.set(row.id, { gate: policy.data });
      else if (moderation.success) gates.set(row.id, { moderation_gate: moderation.data });
    }
    return versions.map((v) => ({ ...v, ...gates.get(v.version) }));
  }

  promote(body: unknown, keyId: string): Promise<ActiveModelEntry> {
    const b = parse(modelPromoteBodySchema, body);
    return this.withNats((nc) => promoteVersion(nc, b.role, b.version, `admin:${keyId}`, b.reason ?? 'admin promotion'));
  }

  rollback(body: unknown, keyId: string): Promise<ActiveModelEntry> {
    const b = parse(modelRollbackBodySchema, body ?? {});
    return this.withNats(async (nc) => {
      const entry = await rollback(nc, b.role, `admin:${keyId}`, b.reason ?? 'rollback');
      if (!entry) throw new ModelVersionError('nothing_to_roll_back', `no earlier ${b.role} version to roll back to`);
      return entry;
    });
  }

  private async withNats<T>(fn: (nc: NatsConnection) => Promise<T>): Promise<T> {
    const nc = this.mesh.connection;
    if (!nc || nc.isClosed()) throw new OpenAiError(503, 'server_error', 'NATS is unavailable right now. Please retry shortly.', null, 'nats_unavailable', { 'retry-after': '1' });
    try {
      return await fn(nc);
    } catch (err) {
      if (err instanceof ModelVersionError) {
        const status = err.code === 'not_found' ? 404 : err.code === 'wrong_role' ? 400 : 409;
        throw new OpenAiError(status, 'invalid_request_error', err.message, err.code === 'nothing_to_roll_back' ? 'role' : 'version', err.code);
      }
      throw err;
    }
  }
}

function parse<T extends z.ZodTypeAny>(schema: T, body: unknown): z.infer<T> {
  const r = schema.safeParse(body);
  if (!r.success) throw fromZodError(r.error, body);
  return r.data;
}
