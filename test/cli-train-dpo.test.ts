/**
 * `npx flywheel train dpo` as a user runs it: the compiled CLI on the committed stories260K model and a synthetic
 * preference JSONL (test/reward.support.ts) prints one JSON summary line on stdout, held-out implied-reward accuracy and
 * margin rise, the progress bar goes to stderr only, and the checkpoint it writes loads through the real loader.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadCheckpoint } from '@flywheel/model';
import { syntheticPreferences, toJsonl } from './reward.support';
import { run } from './support/processes';

jest.setTimeout(120_000);

it('trains, reports the summary JSON and writes a loadable policy checkpoint', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'flywheel-cli-dpo-'));
  try {
    const data = path.join(dir, 'prefs.jsonl');
    writeFileSync(data, toJsonl(syntheticPreferences(40)));
    const out = path.join(dir, 'out');
    const args = ['tools/cli/flywheel.js', 'train', 'dpo', '--model', 'models/stories260K', '--data', data, '--out', out, '--steps', '15', '--beta', '0.2', '--threads', '1', '--json'];
    const r = run(process.execPath, args, {});
    expect(await r.exited).toBe(0);
    const jsonLine = r.output().split('\n').find((l) => l.startsWith('{'));
    expect(jsonLine).toBeDefined();
    const summary = JSON.parse(jsonLine!);
    expect(Object.keys(summary).sort()).toEqual(
      ['frozen_params', 'heldout_accuracy', 'heldout_accuracy_before', 'loss_first', 'loss_last', 'margin_after', 'margin_before', 'pairs', 'trainable_params'].sort(),
    );
    expect(summary.frozen_params).toBe(0);
    expect(summary.pairs).toBe(40);
    expect(summary.heldout_accuracy_before).toBe(0.5);
    expect(summary.heldout_accuracy).toBeGreaterThanOrEqual(0.85);
    expect(summary.margin_after).toBeGreaterThan(summary.margin_before);
    expect(summary.loss_last).toBeLessThan(summary.loss_first);
    expect(r.output()).toMatch(/step 15\/15 loss/);
    const ckpt = await loadCheckpoint(out);
    expect(ckpt.numLabels).toBeNull();
    expect(ckpt.spec.vocabSize).toBe(512);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('refuses a bad --beta with one line and the usage', async () => {
  const r = run(process.execPath, ['tools/cli/flywheel.js', 'train', 'dpo', '--model', 'models/stories260K', '--data', 'x.jsonl', '--out', 'o', '--beta', '0'], {});
  expect(await r.exited).toBe(2);
  expect(r.output()).toMatch(/^flywheel train dpo: beta .*\nusage: flywheel train dpo /);
});

it('trains LoRA adapters with --lora-rank and refuses LoRA flags without it', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'flywheel-cli-dpo-lora-'));
  try {
    const data = path.join(dir, 'prefs.jsonl');
    writeFileSync(data, toJsonl(syntheticPreferences(40)));
    const out = path.join(dir, 'out');
    const base = ['tools/cli/flywheel.js', 'train', 'dpo', '--model', 'models/stories260K', '--data', data, '--out', out, '--steps', '15', '--lr', '2e-3', '--threads', '1'];
    const r = run(process.execPath, [...base, '--lora-rank', '4', '--lora-targets', 'q_proj,v_proj', '--json'], {});
    expect(await r.exited).toBe(0);
    const summary = JSON.parse(r.output().split('\n').find((l) => l.startsWith('{'))!);
    expect(summary.frozen_params).toBeGreaterThan(0);
    expect(summary.trainable_params).toBeLessThan(summary.frozen_params);
    expect(summary.loss_last).toBeLessThan(summary.loss_first);
    const refused = run(process.execPath, [...base, '--lora-alpha', '8'], {});
    expect(await refused.exited).toBe(2);
    expect(refused.output()).toMatch(/^flywheel train dpo: --lora-alpha and --lora-targets need --lora-rank\nusage: flywheel train dpo /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
