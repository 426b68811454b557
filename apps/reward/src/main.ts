/** Reward process entry: config parsed once, then Nest with its health port and the NATS transport. */
import { loadServiceConfig } from '@flywheel/config';
import { runServiceMain } from '@flywheel/mesh';
import { RewardModule } from './reward.module';

runServiceMain(
  () => loadServiceConfig('reward', process.env),
  (config) => RewardModule.forRoot(config),
);
