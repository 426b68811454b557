/**
 * The gateway's in-process Moderator, built once at boot from the parsed moderation config (the same
 * files as the moderation service's); a file that does not parse fails the boot with the variable
 * that points at it. Mirrors apps/moderation/src/moderator.factory.ts.
 */
import { ConfigError, type ModerationConfig } from '@flywheel/config';
import { loadModerator, ModerationFileError, type Moderator } from '@flywheel/moderation';

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
