/** Moderation process entry: config parsed once, then Nest with its health port and the NATS transport. */
import { loadServiceConfig } from '@flywheel/config';
import { runServiceMain } from '@flywheel/mesh';
import { ModerationModule } from './moderation.module';

runServiceMain(
  () => loadServiceConfig('moderation', process.env),
  (config) => ModerationModule.forRoot(config),
);
