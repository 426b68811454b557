/**
 * Moderation process entry: config parsed and the moderator's files loaded once (a bad variable or a
 * bad policy/lexicon/model file exits 78 with one line), then Nest with its health port and NATS.
 */
import { loadModerationConfig, loadOrExit, loadServiceConfig } from '@flywheel/config';
import { runServiceMain } from '@flywheel/mesh';
import { ModerationModule } from './moderation.module';
import { moderatorFromConfig } from '@flywheel/moderation';

const config = loadOrExit(() => ({ ...loadServiceConfig('moderation', process.env), moderation: loadModerationConfig(process.env) }));
const moderator = loadOrExit(() => moderatorFromConfig(config.moderation));

runServiceMain(
  () => config,
  (c) => ModerationModule.forRoot(c, moderator),
);
