/**
 * Gateway process entry: config parsed and the moderator's files loaded once (a bad variable or a bad
 * policy/lexicon/model file exits 78 with one line), then Nest on Fastify (the public HTTP API) + NATS.
 * Before listening, the request hooks (request id, access log, metrics) go onto Fastify itself so they
 * also see requests Nest never routes (404s, bodies Fastify refuses).
 */
import type { FastifyInstance } from 'fastify';
import { loadGatewayConfig, loadOrExit } from '@flywheel/config';
import { runServiceMain } from '@flywheel/mesh';
import { GatewayModule } from './gateway.module';
import { moderatorFromConfig } from '@flywheel/moderation';
import { RequestObserver } from './observability/request-observer';

runServiceMain(
  () => loadGatewayConfig(process.env),
  (config) => GatewayModule.forRoot(config, loadOrExit(() => moderatorFromConfig(config.gateway.moderation))),
  (config) => ({
    bodyLimitBytes: config.gateway.bodyLimitBytes,
    configure: (app) => {
      const fastify = app.getHttpAdapter().getInstance() as FastifyInstance;
      fastify.addHook('onRequest', app.get(RequestObserver).onRequest);
    },
  }),
);
