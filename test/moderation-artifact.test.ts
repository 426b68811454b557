/**
 * The committed moderation classifier (libs/moderation/data/model) is exactly what its seed set trains: the compiled
 * training script (dist/scripts/moderation/train-classifier.js, the one that wrote it) run into a temporary folder
 * gives byte-identical weights and the same calibration and thresholds. Here rather than beside the library because
 * it runs the compiled script: about 17 s, where Jest's sandbox takes minutes over the same numeric loops.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { repoRoot } from './support/processes';

jest.setTimeout(240_000);

it('reproduces the committed artifact byte for byte from the seed set and seed', () => {
  const out = mkdtempSync(path.join(tmpdir(), 'flywheel-moderation-artifact-'));
  try {
    execFileSync(process.execPath, [path.join(repoRoot, 'dist/scripts/moderation/train-classifier.js'), '--out', out], { stdio: ['ignore', 'ignore', 'inherit'] });
    const committedDir = path.join(repoRoot, 'libs/moderation/data/model');
    expect(readFileSync(path.join(out, 'weights.bin')).equals(readFileSync(path.join(committedDir, 'weights.bin')))).toBe(true);
    const trained = JSON.parse(readFileSync(path.join(out, 'model.json'), 'utf8'));
    const committed = JSON.parse(readFileSync(path.join(committedDir, 'model.json'), 'utf8'));
    expect(trained).toEqual(committed);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
