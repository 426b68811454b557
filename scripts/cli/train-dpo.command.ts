/**
 * `flywheel train dpo`: Direct Preference Optimization of a policy checkpoint on preference JSONL (`{"prompt",
 * "chosen", "rejected"}`, the admin export's preference format), the offline alternative to reward model + PPO.
 * Parses the arguments, draws the progress bar on stderr and, with --json, prints one summary object on stdout; the
 * loop itself is runDpoTraining (libs/rl/src/dpo.trainer.ts), shared with the trainer's `dpo` job.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { DPO_DEFAULTS } from '@flywheel/contracts';
import { runDpoTraining } from '@flywheel/rl';
import { drawProgress, finiteOrNull, LORA_FLAGS, LORA_USAGE, loraOptionsOf, parseTrainArgsWith } from './train-args';

export const TRAIN_DPO_USAGE =
  'usage: flywheel train dpo --model DIR --data FILE.jsonl --out DIR [--steps N] [--lr X] [--beta B] [--label-smoothing E] ' +
  `[--batch-size PAIRS] [--seq-len N] [--heldout FRACTION] [--seed S] [--threads N] ${LORA_USAGE} [--json]`;

export async function trainDpoCommand(argv: string[]): Promise<number> {
  const a = parseTrainArgsWith(argv, 'train dpo', TRAIN_DPO_USAGE, DPO_DEFAULTS, {
    beta: z.coerce.number().positive().default(DPO_DEFAULTS.beta),
    'label-smoothing': z.coerce.number().min(0).lt(0.5).default(DPO_DEFAULTS.labelSmoothing),
    ...LORA_FLAGS,
  });
  if (a === null) return 2;
  const lora = loraOptionsOf(a, 'train dpo', TRAIN_DPO_USAGE);
  if (lora === null) return 2;
  const r = await runDpoTraining({
    modelDir: a.model,
    data: { text: readFileSync(a.data, 'utf8'), source: a.data },
    outDir: a.out,
    steps: a.steps,
    lr: a.lr,
    beta: a.beta,
    labelSmoothing: a['label-smoothing'],
    batchSize: a.batchSize,
    seqLen: a.seqLen,
    heldout: a.heldout,
    seed: a.seed,
    threads: a.threads,
    lora,
    onProgress: (p) =>
      drawProgress(p.step, p.steps, `loss ${p.loss.toFixed(4)} acc ${p.accuracy.toFixed(2)} margin ${p.margin.toFixed(3)} lr ${p.lr.toExponential(2)}`),
  });
  process.stderr.write(
    `flywheel train dpo: ${r.trainPairs} train / ${r.heldoutPairs} held-out pairs; held-out implied-reward accuracy ` +
      `${finiteOrNull(r.heldoutAccuracyBefore) ?? '-'} → ${finiteOrNull(r.heldoutAccuracy) ?? '-'}; wrote ${r.outDir}\n`,
  );
  if (a.json) {
    const summary = {
      pairs: r.pairs,
      heldout_accuracy_before: finiteOrNull(r.heldoutAccuracyBefore),
      heldout_accuracy: finiteOrNull(r.heldoutAccuracy),
      loss_first: finiteOrNull(r.lossFirst),
      loss_last: finiteOrNull(r.lossLast),
      margin_before: finiteOrNull(r.heldoutMarginBefore),
      margin_after: finiteOrNull(r.heldoutMarginAfter),
      trainable_params: r.trainableParams,
      frozen_params: r.frozenParams,
    };
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  }
  return 0;
}
