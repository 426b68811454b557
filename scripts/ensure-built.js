#!/usr/bin/env node
/**
 * Builds what is missing or stale before `npm start`, `npm test` and the benchmarks: the native addon
 * (only when its .node is absent; `npm run build:native` forces it) and the TypeScript (incremental
 * tsc, a quick no-op when nothing changed). Plain JS because it runs before anything is compiled.
 */
const { spawnSync } = require('node:child_process');
const { existsSync } = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const force = process.argv.includes('--force');
const nativeOnly = process.argv.includes('--native-only');
const run = (cmd, args) => {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  if (r.status !== 0) process.exit(r.status ?? 1);
};

const addon = path.join(root, 'native', 'build', 'Release', 'flywheel_native.node');
if (existsSync(path.join(root, 'native', 'binding.gyp')) && (force || !existsSync(addon))) {
  run('npm', ['run', '--silent', 'build:native']);
}
if (!nativeOnly) run('npm', ['run', '--silent', 'build:ts']);
