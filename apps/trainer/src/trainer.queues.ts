/**
 * The trainer's BullMQ queues (sft, reward-train, dpo, kto, ppo, eval, loop, …: QUEUES) on one Redis connection under the
 * configured key prefix, with readiness following that connection. Workers register on these names in their
 * own files (`<queue>.processor.ts`); here the queues exist so jobs can be enqueued and inspected.
 */
import { Inject, Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import { Queue } from 'bullmq';
import IORedis from 'ioredis';
import { QUEUES, type QueueName } from '@flywheel/contracts';
import type { TrainerConfig } from '@flywheel/config';
import { Readiness } from '@flywheel/mesh';

/** The trainer's whole config tree (CommonConfig + `trainer`), provided by TrainerModule. */
export const TRAINER_CONFIG = Symbol('TRAINER_CONFIG');

@Injectable()
export class TrainerQueues implements OnApplicationShutdown {
  private readonly logger = new Logger('trainer-queues');
  readonly redis: IORedis;
  readonly queues: ReadonlyMap<QueueName, Queue>;

  constructor(@Inject(TRAINER_CONFIG) config: TrainerConfig, readiness: Readiness) {
    readiness.require('redis');
    // BullMQ needs maxRetriesPerRequest null: its blocking commands must wait out a Redis restart.
    this.redis = new IORedis(config.redis.url, { maxRetriesPerRequest: null, lazyConnect: false });
    this.redis.on('ready', () => {
      readiness.set('redis', true);
      this.logger.log(`connected to Redis, queues: ${Object.values(QUEUES).join(', ')}`);
    });
    this.redis.on('close', () => readiness.set('redis', false));
    this.redis.on('error', (err: Error) => this.logger.warn(`redis: ${err.message}`));
    this.queues = new Map(Object.values(QUEUES).map((name) => [name, new Queue(name, { connection: this.redis, prefix: config.trainer.queuePrefix })]));
    // Each queue re-emits its connection's errors; without a listener BullMQ prints every one with its stack
    // while Redis is down (the connection's own listener above already logs them, once per attempt).
    for (const q of this.queues.values()) q.on('error', () => undefined);
  }

  async counts(): Promise<Record<string, Record<string, number>>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [name, q] of this.queues) out[name] = await q.getJobCounts();
    return out;
  }

  async onApplicationShutdown(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close()));
    await this.redis.quit().catch(() => undefined);
  }
}
