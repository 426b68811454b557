/** Trainer process entry: config parsed once, then Nest with its health port and the NATS transport. */
import { loadServiceConfig } from '@flywheel/config';
import { runServiceMain } from '@flywheel/mesh';
import { TrainerModule } from './trainer.module';

runServiceMain(
  () => loadServiceConfig('trainer', process.env),
  (config) => TrainerModule.forRoot(config),
);
