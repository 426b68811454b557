/**
 * `npx flywheel train kto` as a user runs it: the compiled CLI on the committed stories260K model and a synthetic
 * unpaired KTO JSONL (test/reward.support.ts: happy endings desirable, sad ones undesirable) prints one JSON summary
 * line on stdout, held-out implied-reward separation and margin rise, the progress bar goes to stderr only, and the
 * checkpoint it writes loads through the real loader. Bad flags and data without both kinds are refused in one line.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadCheckpoint } from '@flywheel/model';
import { syntheticKto, toJsonl } from './reward.support';
import { run } from './support/processes';

jest.setTimeout(120_000);

const cli = (args: string[]) => run(process.execPath, ['tools/cli/flywheel.js', 'train', 'kto', ...args], {});

it('trains, reports the summary JSON and writes a loadable policy checkpoint', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'flywheel-cli-kto-'));
  try {
    const data = path.join(dir, 'kto.jsonl');
    writeFileSync(data, toJsonl(syntheticKto(60)));
    const out = path.join(dir, 'out');
    const r = cli(['--model', 'models/stories260K', '--data', data, '--out', out, '--steps', '20', '--undesirable-weight', '1.1', '--threads', '1', '--json']);
    expect(await r.exited).toBe(0);
    const jsonLine = r.output().split('\n').find((l) => l.startsWith('{'));
    expect(jsonLine).toBeDefined();
    const summary = JSON.parse(jsonLine!);
    expect(Object.keys(summary).sort()).toEqual(
      [
        'desirable',
        'examples',
        'frozen_params',
        'heldout_separation',
        'heldout_separation_before',
        'loss_first',
        'loss_last',
        'margin_after',
        'margin_before',
        'trainable_params',
        'undesirable',
      ].sort(),
    );
    expect(summary).toMatchObject({ examples: 60, desirable: 30, undesirable: 30, frozen_params: 0, heldout_separation_before: 0.5, margin_before: 0 });
    expect(summary.heldout_separation).toBeGreaterThanOrEqual(0.85);
    expect(summary.margin_after).toBeGreaterThan(summary.margin_before);
    expect(summary.loss_last).toBeLessThan(summary.loss_first);
    expect(r.output()).toMatch(/step 20\/20 loss \S+ kl /);
    const ckpt = await loadCheckpoint(out);
    expect(ckpt.numLabels).toBeNull();
    expect(ckpt.spec.vocabSize).toBe(512);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('refuses a batch of one and a bad weight with one line and the usage, and data of one kind with one line', async () => {
  const base = ['--model', 'models/stories260K', '--data', 'x.jsonl', '--out', 'o'];
  const one = cli([...base, '--batch-size', '1']);
  expect(await one.exited).toBe(2);
  expect(one.output()).toMatch(/^flywheel train kto: --batch-size must be at least 2 .*\nusage: flywheel train kto /);
  const weight = cli([...base, '--desirable-weight', '0']);
  expect(await weight.exited).toBe(2);
  expect(weight.output()).toMatch(/^flywheel train kto: desirable-weight .*\nusage: flywheel train kto /);
  const dir = mkdtempSync(path.join(tmpdir(), 'flywheel-cli-kto-bad-'));
  try {
    const data = path.join(dir, 'ups.jsonl');
    writeFileSync(data, toJsonl(syntheticKto(12).filter((e) => e.label)));
    const ups = cli(['--model', 'models/stories260K', '--data', data, '--out', path.join(dir, 'out')]);
    expect(await ups.exited).toBe(1);
    expect(ups.output()).toBe(`flywheel: ${data}: no undesirable (label false) example among 6; KTO needs both desirable and undesirable examples\n`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('trains LoRA adapters with --lora-rank', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'flywheel-cli-kto-lora-'));
  try {
    const data = path.join(dir, 'kto.jsonl');
    writeFileSync(data, toJsonl(syntheticKto(60)));
    const r = cli(['--model', 'models/stories260K', '--data', data, '--out', path.join(dir, 'out'), '--steps', '20', '--lr', '2e-3', '--threads', '1', '--lora-rank', '4', '--lora-targets', 'q_proj,v_proj', '--json']);
    expect(await r.exited).toBe(0);
    const summary = JSON.parse(r.output().split('\n').find((l) => l.startsWith('{'))!);
    expect(summary.frozen_params).toBeGreaterThan(0);
    expect(summary.trainable_params).toBeLessThan(summary.frozen_params);
    expect(summary.heldout_separation).toBeGreaterThan(summary.heldout_separation_before);
    expect(summary.loss_last).toBeLessThan(summary.loss_first);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
