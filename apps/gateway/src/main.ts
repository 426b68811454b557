/** Gateway process entry: config parsed once, then Nest on Fastify (the public HTTP API) + NATS. */
import { loadGatewayConfig } from '@flywheel/config';
import { runServiceMain } from '@flywheel/mesh';
import { GatewayModule } from './gateway.module';

runServiceMain(
  () => loadGatewayConfig(process.env),
  (config) => GatewayModule.forRoot(config),
  (config) => ({ bodyLimitBytes: config.gateway.bodyLimitBytes }),
);
