/** Policy process entry: config parsed once, then Nest with its health port, the engine and NATS handlers. */
import { loadPolicyConfig } from '@flywheel/config';
import { runServiceMain } from '@flywheel/mesh';
import { PolicyModule } from './policy.module';

runServiceMain(
  () => loadPolicyConfig(process.env),
  (config) => PolicyModule.forRoot(config),
);
