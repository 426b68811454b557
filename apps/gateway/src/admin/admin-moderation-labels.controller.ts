/**
 * POST /admin/api/moderation-labels: a reviewer marks a prompt or a choice as harmful in given categories, or not
 * harmful (overturning moderation); the session's admin key is the actor. The labels become the `moderation`
 * export that the moderation-train job learns from. POST /admin/api/moderation/train asks the trainer (over
 * `trainer.moderation`) to export that data and queue the job now. Behind AdminSessionGuard (CSRF, as on every
 * admin write).
 */
import { Body, Controller, HttpCode, Injectable, Post, Req, UseGuards } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';
import {
  MODERATION_TRAIN_SUBJECT,
  moderationLabelCreateBodySchema,
  moderationTrainStartedSchema,
  moderationTrainStartSchema,
  type ModerationLabel,
  type ModerationTrainStarted,
} from '@flywheel/contracts';
import { MeshConnection } from '@flywheel/mesh';
import { addModerationLabel } from '@flywheel/store';
import { fromZodError, OpenAiError } from '../http/openai-error';
import { StoreHandle } from '../store/store.handle';
import { trainerLoopError } from './admin-loop.service';
import { moderationLabelOf } from './admin.mapping';
import { AdminSessionGuard, adminSessionOf } from './admin-session.guard';

@Injectable()
export class AdminModerationLabelsService {
  constructor(private readonly store: StoreHandle) {}

  async add(body: unknown, actor: string): Promise<ModerationLabel> {
    const parsed = moderationLabelCreateBodySchema.safeParse(body);
    if (!parsed.success) throw fromZodError(parsed.error, body);
    const outcome = await addModerationLabel(this.store.get().db, actor, parsed.data);
    if (outcome.ok) return moderationLabelOf(outcome.label);
    if (outcome.code === 'not_found') throw new OpenAiError(404, 'invalid_request_error', outcome.message, 'completion_id', 'completion_not_found');
    throw new OpenAiError(400, 'invalid_request_error', outcome.message, outcome.code === 'invalid_choice' ? 'choice_index' : 'prompt_index', outcome.code);
  }
}

/** A start exports every label first: more than a poll's wait on a large store. */
const TRAIN_START_TIMEOUT_MS = 15_000;

@Injectable()
export class AdminModerationTrainService {
  constructor(private readonly mesh: MeshConnection) {}

  async start(body: unknown): Promise<Extract<ModerationTrainStarted, { ok: true }>> {
    const parsed = moderationTrainStartSchema.safeParse(body ?? {});
    if (!parsed.success) throw fromZodError(parsed.error, body);
    let reply: ModerationTrainStarted;
    try {
      reply = await this.mesh.client.request(MODERATION_TRAIN_SUBJECT, parsed.data, moderationTrainStartedSchema, { timeoutMs: TRAIN_START_TIMEOUT_MS });
    } catch (err) {
      throw trainerLoopError(err);
    }
    if (reply.ok) return reply;
    const message = `Moderation training did not start: ${reply.message.replace(/\.$/, '')}.`;
    if (reply.code === 'store_unavailable') throw new OpenAiError(503, 'server_error', message, null, reply.code, { 'retry-after': '5' });
    throw new OpenAiError(409, 'invalid_request_error', message, null, reply.code);
  }
}

@Controller('admin/api/moderation')
@UseGuards(AdminSessionGuard)
export class AdminModerationTrainController {
  constructor(private readonly training: AdminModerationTrainService) {}

  @Post('train')
  @HttpCode(200)
  train(@Body() body: unknown): Promise<Extract<ModerationTrainStarted, { ok: true }>> {
    return this.training.start(body);
  }
}

@Controller('admin/api/moderation-labels')
@UseGuards(AdminSessionGuard)
export class AdminModerationLabelsController {
  constructor(private readonly labels: AdminModerationLabelsService) {}

  @Post()
  @HttpCode(200)
  add(@Body() body: unknown, @Req() req: { raw: IncomingMessage }): Promise<ModerationLabel> {
    return this.labels.add(body, adminSessionOf(req.raw).keyId);
  }
}
