/** AdminLoopService over a fake mesh: a refused start is the error of its refusal, other answers pass through. */
import type { LoopStatus } from '@flywheel/contracts';
import { MeshError, type MeshConnection } from '@flywheel/mesh';
import { OpenAiError } from '../http/openai-error';
import { AdminLoopService } from './admin-loop.service';

const idle: LoopStatus = { paused: false, running: null, approvedSinceLastRun: 1, minNewApproved: 0, scheduleMs: null, lastRun: null };

function serviceAnswering(answer: () => Promise<unknown>): { service: AdminLoopService; asked: unknown[] } {
  const asked: unknown[] = [];
  const mesh = {
    client: {
      request: async (_subject: string, request: unknown) => {
        asked.push(request);
        return answer();
      },
    },
  };
  return { service: new AdminLoopService(mesh as unknown as MeshConnection), asked };
}

async function errorOf(p: Promise<unknown>): Promise<OpenAiError> {
  const err: unknown = await p.then(
    () => null,
    (e: unknown) => e,
  );
  if (!(err instanceof OpenAiError)) throw new Error(`expected an OpenAiError, got ${String(err)}`);
  return err;
}

describe('AdminLoopService', () => {
  it('returns the status of a start that queued a run', async () => {
    const started: LoopStatus = { ...idle, running: { runId: 'loop-1-x', stage: 'queued', startedAt: new Date().toISOString() }, message: 'loop-1-x queued' };
    const { service, asked } = serviceAnswering(async () => started);
    await expect(service.act({ action: 'start' })).resolves.toEqual(started);
    expect(asked).toEqual([{ action: 'start' }]);
  });

  it.each([
    ['no_training_data', 'too few approved preference pairs to train on: 1 approved preference pair on 1 distinct prompt', 409, 'invalid_request_error'],
    ['already_running', 'loop-3-abc is already active', 409, 'invalid_request_error'],
    ['store_unavailable', 'cannot export the approved pairs: store unavailable: connect ECONNREFUSED', 503, 'server_error'],
  ] as const)('answers a start refused with %s as a %i carrying the reason', async (code, message, status, type) => {
    const { service } = serviceAnswering(async () => ({ ...idle, message, refused: { code, message } }));
    const err = await errorOf(service.act({ action: 'start' }));
    expect(err.status).toBe(status);
    expect(err.toBody().error).toEqual({
      type,
      code: code === 'already_running' ? 'loop_already_running' : code,
      param: null,
      message: `The loop did not start: ${message}.`,
    });
  });

  it('passes pause and resume answers through, message included', async () => {
    const { service } = serviceAnswering(async () => ({ ...idle, paused: true, message: 'store unavailable: boom' }));
    await expect(service.act({ action: 'pause' })).resolves.toMatchObject({ paused: true, message: 'store unavailable: boom' });
  });

  it('says 503 when the trainer does not answer a start', async () => {
    const { service } = serviceAnswering(() => Promise.reject(new MeshError('unavailable', 'no responders')));
    const err = await errorOf(service.act({ action: 'start' }));
    expect(err.status).toBe(503);
    expect(err.code).toBe('service_unavailable');
    expect(err.message).toMatch(/trainer is not answering/);
  });
});
