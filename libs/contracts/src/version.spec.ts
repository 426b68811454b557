import { readFileSync } from 'node:fs';
import path from 'node:path';
import { FLYWHEEL_VERSION } from './version';

it('reports the version in package.json', () => {
  const pkg = JSON.parse(readFileSync(path.resolve(__dirname, '../../../package.json'), 'utf8'));
  expect(FLYWHEEL_VERSION).toBe(pkg.version);
});
