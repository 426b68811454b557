/** Policy process entry: config parsed once, then Nest with its health port and the NATS transport. */
import { loadServiceConfig } from '@flywheel/config';
import { runServiceMain } from '@flywheel/mesh';
import { PolicyModule } from './policy.module';

runServiceMain(
  () => loadServiceConfig('policy', process.env),
  (config) => PolicyModule.forRoot(config),
);
