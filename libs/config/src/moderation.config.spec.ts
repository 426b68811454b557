import path from 'node:path';
import { ConfigError } from './config.loader';
import { loadGatewayModerationConfig, loadModerationConfig } from './moderation.config';

describe('moderation config', () => {
  it('defaults to the built-in files and a 512/64 stream window', () => {
    expect(loadModerationConfig({})).toEqual({ policyPath: null, lexiconPath: null, modelDir: null, stream: { windowChars: 512, holdbackChars: 64, classifyEveryChars: 64 } });
  });

  it('resolves paths that exist and names a missing one', () => {
    const dir = path.resolve(__dirname, '../../moderation/data');
    expect(loadModerationConfig({ FLYWHEEL_MODERATION_MODEL_DIR: path.join(dir, 'model') }).modelDir).toBe(path.join(dir, 'model'));
    expect(() => loadModerationConfig({ FLYWHEEL_MODERATION_POLICY: '/nope.json' })).toThrow(/FLYWHEEL_MODERATION_POLICY must be a path to an existing file/);
    expect(() => loadModerationConfig({ FLYWHEEL_MODERATION_MODEL_DIR: dir })).toThrow(/must be a folder holding model.json/);
  });

  it('rejects a holdback the window cannot cover', () => {
    expect(() => loadModerationConfig({ FLYWHEEL_MODERATION_STREAM_WINDOW_CHARS: '100', FLYWHEEL_MODERATION_STREAM_HOLDBACK_CHARS: '60' })).toThrow(ConfigError);
  });

  it('gives the gateway the same files plus its wait on the service', () => {
    expect(loadGatewayModerationConfig({})).toMatchObject({ policyPath: null, checkTimeoutMs: 2000 });
    expect(() => loadGatewayModerationConfig({ FLYWHEEL_MODERATION_TIMEOUT_MS: '0' })).toThrow(/FLYWHEEL_MODERATION_TIMEOUT_MS must be an integer between 10/);
  });
});
