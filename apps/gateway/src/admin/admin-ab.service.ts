/**
 * The blind A/B queue behind /admin/api/ab: pending pairs without versions or sides, a reviewer's verdict on one, the
 * per-candidate summary, and acting on a decided A/B (promote through AdminModelsService, the Models page's own
 * write, or mark the version rejected). The session's admin key is the reviewer. Store calls are libs/store's.
 */
import { Injectable } from '@nestjs/common';
import type { z } from 'zod';
import {
  adminAbQueueQuerySchema,
  adminAbVerdictBodySchema,
  type AdminAbDecision,
  type AdminAbQueue,
  type AdminAbSummary,
  type AdminAbSummaryList,
  type AdminAbVerdictResult,
} from '@flywheel/contracts';
import { abSummaries, countPendingAb, listPendingAb, markVersionRejected, recordAbVerdict, type AbSummary } from '@flywheel/store';
import { fromZodError, OpenAiError } from '../http/openai-error';
import { StoreHandle } from '../store/store.handle';
import { AdminModelsService } from './admin-models.service';

@Injectable()
export class AdminAbService {
  constructor(
    private readonly store: StoreHandle,
    private readonly models: AdminModelsService,
  ) {}

  async queue(query: unknown): Promise<AdminAbQueue> {
    const { limit } = parse(adminAbQueueQuerySchema, query ?? {});
    const { items, pending } = await listPendingAb(this.store.get().db, limit);
    return {
      object: 'list',
      data: items.map((i) => ({ id: i.id, prompt: i.prompt, output_a: i.outputA, output_b: i.outputB, created_at: i.createdAt.toISOString() })),
      pending,
    };
  }

  async verdict(id: string, body: unknown, reviewer: string): Promise<AdminAbVerdictResult> {
    const { verdict } = parse(adminAbVerdictBodySchema, body);
    const db = this.store.get().db;
    const outcome = await recordAbVerdict(db, id, verdict, reviewer);
    if (!outcome.ok) {
      if (outcome.code === 'not_found') throw new OpenAiError(404, 'invalid_request_error', `No A/B pair found with id '${id}'.`, 'id', 'ab_item_not_found');
      throw new OpenAiError(409, 'invalid_request_error', `The A/B pair '${id}' already has a verdict.`, 'id', 'ab_already_decided');
    }
    return { id, verdict, pending: await countPendingAb(db) };
  }

  async summary(): Promise<AdminAbSummaryList> {
    return { object: 'list', data: (await abSummaries(this.store.get().db)).map(summaryOf) };
  }

  async decide(version: string, actor: string): Promise<AdminAbDecision> {
    const db = this.store.get().db;
    const [found] = await abSummaries(db, [version]);
    if (!found) throw new OpenAiError(404, 'invalid_request_error', `No A/B pairs for version '${version}'.`, 'version', 'ab_not_found');
    const summary = summaryOf(found);
    if (found.decision === 'pending') {
      throw new OpenAiError(409, 'invalid_request_error', `The A/B of '${version}' has ${found.verdicts} of the ${found.minVerdicts} verdicts it needs.`, 'version', 'ab_undecided');
    }
    const evidence = `A/B win rate ${found.winRate?.toFixed(3)} (95% ${found.interval?.low.toFixed(3)}–${found.interval?.high.toFixed(3)}) over ${found.verdicts} verdicts vs ${found.activeVersion}`;
    if (found.decision === 'refuse') {
      await markVersionRejected(db, version, [`${evidence}: reviewers prefer the active version`]);
      return { candidate_version: version, outcome: 'refused', summary };
    }
    await this.models.promote({ version, role: 'policy', reason: evidence }, actor);
    return { candidate_version: version, outcome: 'promoted', summary };
  }
}

function summaryOf(s: AbSummary): AdminAbSummary {
  return {
    candidate_version: s.candidateVersion,
    active_version: s.activeVersion,
    items: s.items,
    pending: s.pending,
    verdicts: s.verdicts,
    candidate_wins: s.candidateWins,
    active_wins: s.activeWins,
    ties: s.ties,
    win_rate: s.winRate,
    interval: s.interval,
    min_verdicts: s.minVerdicts,
    decided: s.decided,
    decision: s.decision,
  };
}

function parse<T extends z.ZodTypeAny>(schema: T, body: unknown): z.infer<T> {
  const r = schema.safeParse(body);
  if (!r.success) throw fromZodError(r.error, body);
  return r.data;
}
