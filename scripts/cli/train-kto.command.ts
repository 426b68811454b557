/**
 * `flywheel train kto`: Kahneman-Tversky Optimization of a policy checkpoint on KTO JSONL (`{"prompt", "completion",
 * "label"}`, the admin export's kto format: thumbs, ratings and corrections, no pairs needed). Parses the arguments,
 * draws the progress bar on stderr and, with --json, prints one summary object on stdout; the loop itself is
 * runKtoTraining (libs/rl/src/kto.trainer.ts), shared with the trainer's `kto` job.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { KTO_DEFAULTS } from '@flywheel/contracts';
import { runKtoTraining } from '@flywheel/rl';
import { drawProgress, finiteOrNull, LORA_FLAGS, LORA_USAGE, loraOptionsOf, parseTrainArgsWith } from './train-args';

export const TRAIN_KTO_USAGE =
  'usage: flywheel train kto --model DIR --data FILE.jsonl --out DIR [--steps N] [--lr X] [--beta B] [--desirable-weight W] ' +
  `[--undesirable-weight W] [--batch-size N>=2] [--seq-len N] [--heldout FRACTION] [--seed S] [--threads N] ${LORA_USAGE} [--json]`;

/** A figure for the log line: '-' where it is NaN (a held-out metric without held-out examples of both kinds). */
const shown = (x: number, digits: number): string => (Number.isFinite(x) ? x.toFixed(digits) : '-');

export async function trainKtoCommand(argv: string[]): Promise<number> {
  const a = parseTrainArgsWith(argv, 'train kto', TRAIN_KTO_USAGE, KTO_DEFAULTS, {
    beta: z.coerce.number().positive().default(KTO_DEFAULTS.beta),
    'desirable-weight': z.coerce.number().positive().default(KTO_DEFAULTS.desirableWeight),
    'undesirable-weight': z.coerce.number().positive().default(KTO_DEFAULTS.undesirableWeight),
    ...LORA_FLAGS,
  });
  if (a === null) return 2;
  if (a.batchSize < 2) {
    process.stderr.write(`flywheel train kto: --batch-size must be at least 2 (the KL reference point pairs each prompt with another example's completion)\n${TRAIN_KTO_USAGE}\n`);
    return 2;
  }
  const lora = loraOptionsOf(a, 'train kto', TRAIN_KTO_USAGE);
  if (lora === null) return 2;
  const r = await runKtoTraining({
    modelDir: a.model,
    data: { text: readFileSync(a.data, 'utf8'), source: a.data },
    outDir: a.out,
    steps: a.steps,
    lr: a.lr,
    beta: a.beta,
    desirableWeight: a['desirable-weight'],
    undesirableWeight: a['undesirable-weight'],
    batchSize: a.batchSize,
    seqLen: a.seqLen,
    heldout: a.heldout,
    seed: a.seed,
    threads: a.threads,
    lora,
    onWarning: (message) => process.stderr.write(`flywheel train kto: warning: ${message}\n`),
    onProgress: (p) => drawProgress(p.step, p.steps, `loss ${p.loss.toFixed(4)} kl ${p.kl.toFixed(3)} margin ${shown(p.margin, 3)} lr ${p.lr.toExponential(2)}`),
  });
  process.stderr.write(
    `flywheel train kto: ${r.trainExamples} train / ${r.heldoutExamples} held-out examples (${r.desirable} desirable, ${r.undesirable} undesirable); ` +
      `held-out implied-reward separation ${finiteOrNull(r.heldoutSeparationBefore) ?? '-'} → ${finiteOrNull(r.heldoutSeparation) ?? '-'}; wrote ${r.outDir}\n`,
  );
  if (a.json) {
    const summary = {
      examples: r.examples,
      desirable: r.desirable,
      undesirable: r.undesirable,
      heldout_separation_before: finiteOrNull(r.heldoutSeparationBefore),
      heldout_separation: finiteOrNull(r.heldoutSeparation),
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
