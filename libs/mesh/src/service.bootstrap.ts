/**
 * Boots one service process: a Nest app on Fastify for its HTTP port (health, metrics; the gateway's
 * API too) plus the NATS microservice transport in the service's queue group. HTTP listens first so
 * liveness answers while NATS is still coming up; readiness waits for the transport's subscriptions too;
 * SIGINT/SIGTERM close both cleanly.
 */
import 'reflect-metadata';
import { Logger, type DynamicModule, type LogLevel, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { loadOrExit, type CommonConfig } from '@flywheel/config';
import type { NatsConnection } from 'nats';
import { natsTransportOptions } from './nest-transport';
import { Readiness } from './readiness';
import { StreamMux } from './stream-mux.publisher';

const LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'];

export interface BootOptions {
  config: CommonConfig;
  module: Type<unknown> | DynamicModule;
  bodyLimitBytes?: number;
  /** Runs after Nest is created and before it listens (gateway: content parsers, hooks). */
  configure?: (app: NestFastifyApplication) => void | Promise<void>;
}

export async function bootService(opts: BootOptions): Promise<NestFastifyApplication> {
  const { config } = opts;
  const logger = new Logger(config.service);
  const app = await NestFactory.create<NestFastifyApplication>(
    opts.module,
    new FastifyAdapter({ bodyLimit: opts.bodyLimitBytes ?? 1_048_576 }),
    { logger: LEVELS.slice(0, LEVELS.indexOf(config.logLevel) + 1), abortOnError: false },
  );
  app.enableShutdownHooks();
  // A shutdown hook waiting on a dependency that is gone (BullMQ closing on a dead Redis) must not keep the
  // process forever: after a signal, exit anyway once the deadline passes.
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      setTimeout(() => {
        process.stderr.write(`${config.service}: shutdown still not done ${SHUTDOWN_DEADLINE_MS} ms after ${signal}; exiting\n`);
        process.exit(1);
      }, SHUTDOWN_DEADLINE_MS).unref();
    });
  }
  await opts.configure?.(app);
  // /readyz is up with HTTP, before NATS: until the transport has subscribed, a request on the service's
  // subjects finds no responder, so a caller that trusted readiness got a 503 (the trainer's `trainer.loop`).
  const readiness = app.get(Readiness);
  readiness.require(HANDLERS_CONDITION);
  const transport = app.connectMicroservice(natsTransportOptions(config.service, config.nats.servers, config.instanceId), {
    inheritAppConfig: false,
  });
  // Multiplexed frames go out on the connection Nest replies on (asked for per publish: it is made at start).
  app.get(StreamMux).attach(() => transport.unwrap<NatsConnection>());
  await app.listen(config.http.port, config.http.host);
  logger.log(`${config.instanceId} listening on http://${config.http.host}:${config.http.port}`);
  // Resolves once NATS is reached (the transport waits on first connect and reconnects forever).
  await app.startAllMicroservices();
  readiness.set(HANDLERS_CONDITION, true);
  logger.log(`connected to NATS at ${config.nats.servers.join(',')}`);
  return app;
}

/** The readiness condition that holds once the service's NATS handlers are subscribed. */
export const HANDLERS_CONDITION = 'handlers';

/** How long shutdown hooks may take after SIGTERM / SIGINT (a training job checkpoints within one step). */
export const SHUTDOWN_DEADLINE_MS = 60_000;

/**
 * The whole `main` of a service process: config parsed once (a bad variable exits with one line),
 * then boot; a failure to boot exits non-zero with one line instead of a stack.
 */
export function runServiceMain<C extends CommonConfig>(
  loadConfig: () => C,
  module: (config: C) => Type<unknown> | DynamicModule,
  extra: Omit<BootOptions, 'config' | 'module'> | ((config: C) => Omit<BootOptions, 'config' | 'module'>) = {},
): void {
  const config = loadOrExit(loadConfig);
  const options = typeof extra === 'function' ? extra(config) : extra;
  bootService({ config, module: module(config), ...options }).catch((err: unknown) => {
    process.stderr.write(`${config.service} failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
