#!/usr/bin/env node
// `npx flywheel …`: runs the compiled CLI (scripts/cli) from the repository's dist/ build.
const path = require('node:path');
const { existsSync } = require('node:fs');
const entry = path.resolve(__dirname, '..', '..', 'dist', 'scripts', 'cli', 'cli.main.js');
if (!existsSync(entry)) {
  process.stderr.write('flywheel: not built yet; run `npm run build` in the repository first\n');
  process.exit(1);
}
require(entry);
