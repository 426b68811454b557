/**
 * Reward-model training with LoRA (issue 18: LoRA in every trainer) on the committed stories260K policy and the
 * synthetic preference set: held-out pairwise accuracy rises, the base stays frozen (the merged checkpoint differs from
 * it only in the targeted projections and the new score head), and the PEFT adapter is written as a sequence
 * classifier's.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadCheckpoint, readSafetensorsFile } from '@flywheel/model';
import { syntheticPreferences, toJsonl } from '../../../test/reward.support';
import { changedTensors, targetedTensors } from './lora-merge.testing';
import { CHECKPOINT_ADAPTER_DIR, PEFT_ADAPTER_CONFIG_FILE, PEFT_ADAPTER_WEIGHTS_FILE, readPeftAdapter } from './peft-adapter.io';
import { runRewardTraining } from './reward.trainer';

const modelDir = path.resolve(__dirname, '../../../models/stories260K');
jest.setTimeout(60_000);

it('trains adapters and the score head on the frozen base, and writes the merged reward model and its adapter', async () => {
  const outDir = mkdtempSync(path.join(os.tmpdir(), 'reward-lora-'));
  try {
    const r = await runRewardTraining({
      modelDir,
      data: { text: toJsonl(syntheticPreferences(60)), source: 'prefs.jsonl' },
      outDir,
      steps: 40,
      lr: 3e-3,
      batchSize: 8,
      heldout: 0.25,
      seed: 1,
      threads: 1,
      lora: { rank: 4, targets: ['q_proj', 'v_proj', 'up_proj'] },
    });
    expect(r.frozenParams).toBeGreaterThan(0);
    expect(r.trainableParams).toBeLessThan(r.frozenParams / 4);
    expect(r.lossLast).toBeLessThan(r.lossFirst);
    expect(r.heldoutAccuracy).toBeGreaterThan(r.heldoutAccuracyBefore);
    expect(r.heldoutAccuracy).toBeGreaterThanOrEqual(0.8);
    const base = (await loadCheckpoint(modelDir)).weights;
    const out = await loadCheckpoint(outDir);
    expect(out.numLabels).toBe(1);
    // (A causal LM's lm_head is not part of the reward model: changedTensors skips it.)
    expect(changedTensors(base, out.weights)).toEqual(targetedTensors(base, ['q_proj', 'v_proj', 'up_proj']));
    const adapter = await readPeftAdapter(path.join(outDir, CHECKPOINT_ADAPTER_DIR));
    expect(adapter.config).toMatchObject({ rank: 4, targets: ['q_proj', 'v_proj', 'up_proj'], taskType: 'SEQ_CLS' });
    // The trained head travels with the adapter, as PEFT saves a sequence classifier's (else PEFT runs an untrained head).
    const head = out.weights.get('score.weight')!;
    expect(head.some((v) => v !== 0)).toBe(true);
    expect(adapter.weights.get('score.weight')).toEqual(head);
    const raw = JSON.parse(readFileSync(path.join(outDir, CHECKPOINT_ADAPTER_DIR, PEFT_ADAPTER_CONFIG_FILE), 'utf8'));
    expect(raw.modules_to_save).toEqual(['score']);
    const file = await readSafetensorsFile(path.join(outDir, CHECKPOINT_ADAPTER_DIR, PEFT_ADAPTER_WEIGHTS_FILE));
    expect(file.get('base_model.model.score.weight')?.shape).toEqual([1, out.spec.hiddenSize]);
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
});
