// Jest for the whole monorepo: unit specs beside the code (apps/, libs/) and
// integration tests under test/ that boot real services against real NATS/Redis.
const aliases = ['contracts', 'config', 'mesh', 'model', 'kernels', 'moderation', 'train', 'rl', 'store'];
const moduleNameMapper = {
  ...Object.fromEntries(aliases.map((name) => [`^@flywheel/${name}$`, `<rootDir>/libs/${name}/src`])),
  // Test-only entry points, kept out of their library's barrel (tsconfig.json paths maps them the same way).
  '^@flywheel/store/testing$': '<rootDir>/libs/store/src/store.testing.ts',
};
const transform = { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] };
const common = { moduleFileExtensions: ['ts', 'js', 'json'], transform, moduleNameMapper, testEnvironment: 'node' };
module.exports = {
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/apps/**/*.spec.ts', '<rootDir>/libs/**/*.spec.ts'] },
    { ...common, displayName: 'integration', testMatch: ['<rootDir>/test/**/*.test.ts'] },
  ],
};
