/**
 * The admin UI's only door to the gateway: typed calls to /admin/api, every answer parsed with the zod
 * schemas of libs/contracts (admin and its A/B queue, model versions, moderation labels, training runs). Holds the session's CSRF token in memory (the session
 * cookie itself is httpOnly, so script never sees it). No DOM here: fetch and URLSearchParams only.
 */
import type { z } from 'zod';
import {
  ADMIN_CSRF_HEADER,
  adminAbDecisionSchema,
  adminAbQueueSchema,
  adminAbSummaryListSchema,
  adminAbVerdictResultSchema,
  adminCompletionDetailSchema,
  adminExportListSchema,
  adminExportSchema,
  adminInboxPageSchema,
  adminPolicyVersionsSchema,
  adminReviewsResponseSchema,
  adminSessionSchema,
  adminStatsSchema,
  type AbVerdict,
  type AdminAbDecision,
  type AdminAbQueue,
  type AdminAbSummary,
  type AdminAbVerdictResult,
  type AdminCompletionDetail,
  type AdminExport,
  type AdminExportCreateBody,
  type AdminInboxPage,
  type AdminInboxQuery,
  type AdminReviewAction,
  type AdminReviewsResponse,
  type AdminSession,
  type AdminStats,
  type AdminStatsQuery,
} from '../../../libs/contracts/src/admin.schemas';
import {
  moderationLabelSchema,
  moderationTrainStartedSchema,
  type ModerationLabel,
  type ModerationLabelCreateBody,
  type ModerationTrainStart,
} from '../../../libs/contracts/src/moderation-labels.schemas';
import {
  activeModelEntrySchema,
  modelVersionListSchema,
  type ActiveModelEntry,
  type ModelRole,
  type ModelVersionList,
} from '../../../libs/contracts/src/model-versions.schemas';
import {
  adminRunListSchema,
  loopStatusSchema,
  trainingRunDetailSchema,
  type AdminLoopActionBody,
  type AdminRunList,
  type AdminRunsQuery,
  type LoopStatus,
  type TrainingRunDetail,
} from '../../../libs/contracts/src/training-runs.schemas';

/** An answer other than 2xx, with OpenAI's error fields when the body had them. */
export class AdminApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null,
  ) {
    super(message);
  }
}

const BASE = '/admin/api';
let csrfToken: string | null = null;

/** Drops undefined and empty values so the query carries only what the user set. */
export function toQuery(params: Record<string, unknown>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if ((typeof v === 'string' && v !== '') || typeof v === 'number' || typeof v === 'boolean') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

async function call<S extends z.ZodType>(schema: S, method: string, route: string, body?: unknown): Promise<z.output<S>> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers[ADMIN_CSRF_HEADER] = csrfToken;
  const res = await fetch(`${BASE}${route}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  const text = await res.text();
  const json: unknown = text ? safeJson(text) : null;
  if (!res.ok) {
    const err = errorFields(json);
    throw new AdminApiError(res.status, err.message ?? `${method} ${route}: HTTP ${res.status}`, err.code);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AdminApiError(res.status, `unexpected answer from ${route}: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`, 'bad_response');
  }
  return parsed.data;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function errorFields(json: unknown): { message: string | null; code: string | null } {
  if (typeof json !== 'object' || json === null || !('error' in json)) return { message: null, code: null };
  const e: unknown = json.error;
  if (typeof e !== 'object' || e === null) return { message: null, code: null };
  const message = 'message' in e && typeof e.message === 'string' ? e.message : null;
  const code = 'code' in e && typeof e.code === 'string' ? e.code : null;
  return { message, code };
}

export const adminApi = {
  async login(key: string): Promise<AdminSession> {
    const s = await call(adminSessionSchema, 'POST', '/session', { key });
    csrfToken = s.csrf_token;
    return s;
  },
  /** The current session (recovers the CSRF token after a reload); 401 when there is none. */
  async session(): Promise<AdminSession> {
    const s = await call(adminSessionSchema, 'GET', '/session');
    csrfToken = s.csrf_token;
    return s;
  },
  async logout(): Promise<void> {
    const res = await fetch(`${BASE}/session`, { method: 'DELETE', headers: csrfToken ? { [ADMIN_CSRF_HEADER]: csrfToken } : {} });
    csrfToken = null;
    if (!res.ok && res.status !== 401) throw new AdminApiError(res.status, `logout: HTTP ${res.status}`, null);
  },
  inbox(query: AdminInboxQuery): Promise<AdminInboxPage> {
    return call(adminInboxPageSchema, 'GET', `/inbox${toQuery(query)}`);
  },
  async policyVersions(): Promise<string[]> {
    return (await call(adminPolicyVersionsSchema, 'GET', '/policy-versions')).data;
  },
  completion(id: string): Promise<AdminCompletionDetail> {
    return call(adminCompletionDetailSchema, 'GET', `/completions/${encodeURIComponent(id)}`);
  },
  review(actions: AdminReviewAction[]): Promise<AdminReviewsResponse> {
    return call(adminReviewsResponseSchema, 'POST', '/reviews', { actions });
  },
  createExport(body: AdminExportCreateBody): Promise<AdminExport> {
    return call(adminExportSchema, 'POST', '/exports', body);
  },
  async exports(): Promise<AdminExport[]> {
    return (await call(adminExportListSchema, 'GET', '/exports')).data;
  },
  stats(query: AdminStatsQuery): Promise<AdminStats> {
    return call(adminStatsSchema, 'GET', `/stats${toQuery(query)}`);
  },
  models(role: ModelRole = 'policy'): Promise<ModelVersionList> {
    return call(modelVersionListSchema, 'GET', `/models${toQuery({ role })}`);
  },
  promoteModel(version: string, role: ModelRole = 'policy'): Promise<ActiveModelEntry> {
    return call(activeModelEntrySchema, 'POST', '/models/promote', { version, role });
  },
  rollbackModel(role: ModelRole = 'policy'): Promise<ActiveModelEntry> {
    return call(activeModelEntrySchema, 'POST', '/models/rollback', { role });
  },
  /** A reviewer's label on a prompt or a choice (400 when the text is not there, 404 when the completion is not). */
  moderationLabel(body: ModerationLabelCreateBody): Promise<ModerationLabel> {
    return call(moderationLabelSchema, 'POST', '/moderation-labels', body);
  },
  /** Exports the moderation labels and queues a moderation-train job; a refusal throws (409 no_training_data / already_running, 503). */
  async trainModeration(body: Partial<ModerationTrainStart> = {}): Promise<{ job_id: string; run_id: string; export_id: string; rows: number }> {
    const started = await call(moderationTrainStartedSchema, 'POST', '/moderation/train', body);
    if (!started.ok) throw new AdminApiError(409, started.message, started.code);
    return started;
  },
  runs(query: AdminRunsQuery): Promise<AdminRunList> {
    return call(adminRunListSchema, 'GET', `/runs${toQuery(query)}`);
  },
  run(id: string): Promise<TrainingRunDetail> {
    return call(trainingRunDetailSchema, 'GET', `/runs/${encodeURIComponent(id)}`);
  },
  /** Pending blind A/B pairs, oldest first: prompt and outputs A and B only. */
  abQueue(limit = 20): Promise<AdminAbQueue> {
    return call(adminAbQueueSchema, 'GET', `/ab${toQuery({ limit })}`);
  },
  /** A verdict on one pair (404 unknown id, 409 already decided). */
  abVerdict(id: string, verdict: AbVerdict): Promise<AdminAbVerdictResult> {
    return call(adminAbVerdictResultSchema, 'POST', `/ab/${encodeURIComponent(id)}`, { verdict });
  },
  async abSummary(): Promise<AdminAbSummary[]> {
    return (await call(adminAbSummaryListSchema, 'GET', '/ab/summary')).data;
  },
  /** Promotes or refuses a candidate whose A/B is decided (409 ab_undecided before that). */
  abDecide(version: string): Promise<AdminAbDecision> {
    return call(adminAbDecisionSchema, 'POST', `/ab/candidates/${encodeURIComponent(version)}/decide`, {});
  },
  /** The trainer's RL loop (503 service_unavailable while no trainer answers). */
  loop(): Promise<LoopStatus> {
    return call(loopStatusSchema, 'GET', '/loop');
  },
  /** The status after the action; a start that queued nothing throws its reason (409 loop_already_running / no_training_data, 503). */
  loopAction(action: AdminLoopActionBody['action']): Promise<LoopStatus> {
    return call(loopStatusSchema, 'POST', '/loop', { action });
  },
};
