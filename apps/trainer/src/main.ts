/** Trainer process entry: config parsed once, then Nest with its health port, the NATS transport and the job workers. */
import { loadTrainerConfig } from '@flywheel/config';
import { runServiceMain } from '@flywheel/mesh';
import { TrainerModule } from './trainer.module';

runServiceMain(
  () => loadTrainerConfig(process.env),
  (config) => TrainerModule.forRoot(config),
);
