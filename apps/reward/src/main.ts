/** Reward process entry: config parsed once, then Nest with its health port, the reward model and NATS handlers. */
import { loadRewardConfig } from '@flywheel/config';
import { runServiceMain } from '@flywheel/mesh';
import { RewardModule } from './reward.module';

runServiceMain(
  () => loadRewardConfig(process.env),
  (config) => RewardModule.forRoot(config),
);
