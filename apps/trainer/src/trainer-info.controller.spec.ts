/**
 * trainer.info's handler on real TrainerQueues over this machine's Redis (under a prefix of this run, removed
 * afterwards): every queue is listed with BullMQ's counts, the counts are the queues' real contents (waiting and
 * delayed jobs show where they are), and a request with a payload is refused.
 */
import { Logger } from '@nestjs/common';
import { Queue } from 'bullmq';
import IORedis from 'ioredis';
import { ZodError } from 'zod';
import { QUEUES, trainerInfoSchema } from '@flywheel/contracts';
import { loadTrainerConfig } from '@flywheel/config';
import { Readiness, toMeshErrorBody } from '@flywheel/mesh';
import { TrainerInfoController } from './trainer-info.controller';
import { TrainerQueues } from './trainer.queues';

jest.setTimeout(30_000);

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('TrainerInfoController (real Redis)', () => {
  const prefix = `fwtest-info-${process.pid}-${Date.now()}`;
  let queues: TrainerQueues;
  let controller: TrainerInfoController;
  let readiness: Readiness;

  beforeAll(() => {
    Logger.overrideLogger(false);
    readiness = new Readiness();
    queues = new TrainerQueues(loadTrainerConfig({ REDIS_URL, FLYWHEEL_QUEUE_PREFIX: prefix }), readiness);
    controller = new TrainerInfoController(queues);
  });

  afterAll(async () => {
    for (const q of queues.queues.values()) await q.obliterate({ force: true }).catch(() => undefined);
    const redis = new IORedis(REDIS_URL);
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
    await queues.onApplicationShutdown();
  });

  it('lists every queue with zero counts when nothing was queued', async () => {
    const info = trainerInfoSchema.parse(await controller.info({}));
    expect(Object.keys(info.queues).sort()).toEqual(Object.values(QUEUES).sort());
    for (const counts of Object.values(info.queues)) {
      expect(counts).toMatchObject({ waiting: 0, active: 0, delayed: 0, failed: 0, completed: 0 });
    }
    expect(readiness.snapshot()).toEqual({ redis: true });
  });

  it('counts the jobs each queue really holds', async () => {
    const other = new Queue(QUEUES.ppo, { connection: queues.redis, prefix });
    await other.add('ppo', { any: 'data' });
    await other.add('ppo', { any: 'data' }, { delay: 60_000 });
    await queues.queues.get(QUEUES.eval)!.add('eval', { any: 'data' });
    await other.close();
    const info = trainerInfoSchema.parse(await controller.info({}));
    expect(info.queues[QUEUES.ppo]).toMatchObject({ waiting: 1, delayed: 1 });
    expect(info.queues[QUEUES.eval]).toMatchObject({ waiting: 1, delayed: 0 });
    expect(info.queues[QUEUES.sft]).toMatchObject({ waiting: 0, delayed: 0 });
  });

  it('refuses a request with a payload (invalid_payload)', async () => {
    const err: unknown = await controller.info({ queue: 'ppo' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ZodError);
    expect(toMeshErrorBody(err).code).toBe('invalid_payload');
  });
});
