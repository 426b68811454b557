#!/usr/bin/env node
/**
 * Builds what is missing or stale before `npm start`, `npm test` and the benchmarks: the native addon
 * (only when its .node is absent; `npm run build:native` forces it) and the TypeScript (incremental
 * tsc, a quick no-op when nothing changed) and the admin UI (Vite, when apps/admin-ui/dist is missing or
 * older than its sources). Plain JS because it runs before anything is compiled.
 */
const { spawnSync } = require('node:child_process');
const { existsSync, readdirSync, statSync } = require('node:fs');
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

/** Newest modification time (ms) of the files under `p` (a file or a folder), 0 when absent. */
const newest = (p) => {
  if (!existsSync(p)) return 0;
  const st = statSync(p);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(0, ...readdirSync(p).map((name) => newest(path.join(p, name))));
};
const ui = path.join(root, 'apps', 'admin-ui');
const uiBuilt = path.join(ui, 'dist', 'index.html');
const uiSources = ['src', 'index.html', 'vite.config.ts', 'package.json'].map((f) => path.join(ui, f));
// Vite is a devDependency: an install without dev dependencies serves no UI (the gateway answers 503).
if (!nativeOnly && existsSync(ui) && existsSync(path.join(root, 'node_modules', 'vite', 'bin', 'vite.js'))) {
  const inputs = Math.max(...uiSources.map(newest), newest(path.join(root, 'libs', 'contracts', 'src')));
  // Vite's CLI straight from node_modules: the same command as `npm run build:admin-ui`.
  const vite = path.join(root, 'node_modules', 'vite', 'bin', 'vite.js');
  if (force || newest(uiBuilt) < inputs) run(process.execPath, [vite, 'build', '--config', 'apps/admin-ui/vite.config.ts']);
}
