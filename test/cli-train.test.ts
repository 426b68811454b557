/**
 * `npx flywheel train sft` as a user runs it: the compiled CLI on the committed stories260K model and the
 * SFT fixture prints one JSON summary line on stdout, held-out loss falls, the progress bar goes to stderr
 * only, and the checkpoint it writes loads through the real loader.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadCheckpoint } from '@flywheel/model';
import { run } from './support/processes';

jest.setTimeout(120_000);

it('trains, reports the summary JSON and writes a loadable checkpoint', async () => {
  const out = mkdtempSync(path.join(tmpdir(), 'flywheel-cli-sft-'));
  try {
    const r = run(process.execPath, ['tools/cli/flywheel.js', 'train', 'sft', '--model', 'models/stories260K', '--data', 'test/fixtures/sft/stories.jsonl', '--out', out, '--steps', '12', '--lr', '3e-3', '--seed', '1', '--json'], {});
    expect(await r.exited).toBe(0);
    const jsonLine = r.output().split('\n').find((l) => l.startsWith('{'));
    expect(jsonLine).toBeDefined();
    const summary = JSON.parse(jsonLine!);
    expect(Object.keys(summary).sort()).toEqual(['heldout_loss_after', 'heldout_loss_before', 'mfu', 'steps', 'tokens_per_s', 'train_loss_first', 'train_loss_last'].sort());
    expect(summary.steps).toBe(12);
    expect(summary.heldout_loss_after).toBeLessThan(summary.heldout_loss_before);
    expect(summary.tokens_per_s).toBeGreaterThan(0);
    expect(summary.mfu).toBeGreaterThan(0);
    expect(r.output()).toMatch(/step 12\/12/);
    const ckpt = await loadCheckpoint(out);
    expect(ckpt.spec.vocabSize).toBe(512);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

it('refuses missing arguments with one line and the usage', async () => {
  const r = run(process.execPath, ['tools/cli/flywheel.js', 'train', 'sft', '--model', 'models/stories260K'], {});
  expect(await r.exited).toBe(2);
  expect(r.output()).toMatch(/^flywheel train sft: data --data FILE\.jsonl is required\nusage: flywheel train sft /);
});
