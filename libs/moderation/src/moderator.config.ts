/**
 * Builds the Moderator from the parsed moderation config, for the moderation service and the gateway's
 * in-process output check alike; a policy, lexicon or model file that does not parse becomes a
 * ConfigError naming the variable that points at it (or the built-in file).
 */
import { ConfigError, type ModerationConfig } from '@flywheel/config';
import { loadModerator, ModerationFileError } from './moderation.loader';
import type { Moderator } from './moderator';

const VARIABLE = {
  policy: 'FLYWHEEL_MODERATION_POLICY',
  lexicon: 'FLYWHEEL_MODERATION_LEXICON',
  model: 'FLYWHEEL_MODERATION_MODEL_DIR',
} as const;

export function moderatorFromConfig(config: ModerationConfig): Moderator {
  try {
    return loadModerator({ policyPath: config.policyPath, lexiconPath: config.lexiconPath, modelDir: config.modelDir });
  } catch (err) {
    if (!(err instanceof ModerationFileError)) throw err;
    const variable = VARIABLE[err.file];
    throw new ConfigError(variable, `invalid configuration: ${variable} ${err.message.replace(/\s+/g, ' ')}`);
  }
}
