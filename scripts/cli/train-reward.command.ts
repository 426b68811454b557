/**
 * `flywheel train reward`: trains a reward model (Bradley–Terry, scalar head on a policy checkpoint) on preference
 * JSONL (`{"prompt", "chosen", "rejected"}`, the admin export's preference format). Parses the arguments, draws the
 * progress bar on stderr and, with --json, prints one summary object on stdout; the loop itself is
 * runRewardTraining (libs/train/src/reward.trainer.ts), shared with the trainer's `reward-train` job.
 */
import { readFileSync } from 'node:fs';
import { runRewardTraining } from '@flywheel/train';
import { drawProgress, finiteOrNull, LORA_FLAGS, LORA_USAGE, loraOptionsOf, parseTrainArgsWith } from './train-args';

export const TRAIN_REWARD_USAGE =
  'usage: flywheel train reward --model DIR --data FILE.jsonl --out DIR [--steps N] [--lr X] [--batch-size PAIRS] [--seq-len N] ' +
  `[--heldout FRACTION] [--seed S] [--threads N] ${LORA_USAGE} [--json]`;

export async function trainRewardCommand(argv: string[]): Promise<number> {
  const a = parseTrainArgsWith(argv, 'train reward', TRAIN_REWARD_USAGE, { steps: 60, lr: 3e-3, heldout: 0.2 }, LORA_FLAGS);
  if (a === null) return 2;
  const lora = loraOptionsOf(a, 'train reward', TRAIN_REWARD_USAGE);
  if (lora === null) return 2;
  const r = await runRewardTraining({
    modelDir: a.model,
    data: { text: readFileSync(a.data, 'utf8'), source: a.data },
    outDir: a.out,
    steps: a.steps,
    lr: a.lr,
    batchSize: a.batchSize,
    seqLen: a.seqLen,
    heldout: a.heldout,
    seed: a.seed,
    threads: a.threads,
    lora,
    onProgress: (p) => drawProgress(p.step, p.steps, `loss ${p.loss.toFixed(4)} acc ${p.accuracy.toFixed(2)} lr ${p.lr.toExponential(2)}`),
  });
  process.stderr.write(
    `flywheel train reward: ${r.trainPairs} train / ${r.heldoutPairs} held-out pairs; held-out accuracy ` +
      `${finiteOrNull(r.heldoutAccuracyBefore) ?? '-'} → ${finiteOrNull(r.heldoutAccuracy) ?? '-'}; wrote ${r.outDir}\n`,
  );
  if (a.json) {
    const summary = { pairs: r.pairs, heldout_accuracy: finiteOrNull(r.heldoutAccuracy), loss_first: r.lossFirst, loss_last: r.lossLast };
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  }
  return 0;
}
