/**
 * `flywheel train reward`: trains a reward model (Bradley–Terry, scalar head on a policy checkpoint) on preference
 * JSONL (`{"prompt", "chosen", "rejected"}`, the admin export's preference format). Parses the arguments, draws the
 * progress bar on stderr and, with --json, prints one summary object on stdout; the loop itself is
 * runRewardTraining (libs/model/src/training/reward.trainer.ts), shared with the trainer's `reward-train` job.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { runRewardTraining } from '@flywheel/model';

const argsSchema = z.object({
  model: z.string({ message: '--model DIR is required' }).min(1),
  data: z.string({ message: '--data FILE.jsonl is required' }).min(1),
  out: z.string({ message: '--out DIR is required' }).min(1),
  steps: z.coerce.number().int().positive().default(60),
  lr: z.coerce.number().positive().default(3e-3),
  batchSize: z.coerce.number().int().positive().default(8),
  seqLen: z.coerce.number().int().min(2).optional(),
  heldout: z.coerce.number().min(0).max(0.5).default(0.2),
  seed: z.coerce.number().int().nonnegative().default(0),
  threads: z.coerce.number().int().positive().optional(),
  json: z.boolean().default(false),
});

export const TRAIN_REWARD_USAGE =
  'usage: flywheel train reward --model DIR --data FILE.jsonl --out DIR [--steps N] [--lr X] [--batch-size PAIRS] [--seq-len N] ' +
  '[--heldout FRACTION] [--seed S] [--threads N] [--json]';

function progress(step: number, total: number, loss: number, acc: number, lr: number): void {
  if (!process.stderr.isTTY && step !== total && step % Math.max(1, Math.floor(total / 20)) !== 0) return;
  const width = 30;
  const done = Math.round((width * step) / total);
  const line = `[${'#'.repeat(done)}${'.'.repeat(width - done)}] step ${step}/${total} loss ${loss.toFixed(4)} acc ${acc.toFixed(2)} lr ${lr.toExponential(2)}`;
  process.stderr.write(process.stderr.isTTY ? `\r${line}${step === total ? '\n' : ''}` : `${line}\n`);
}

/** JSON has no NaN: a held-out accuracy without held-out pairs is null. */
const finiteOrNull = (x: number): number | null => (Number.isFinite(x) ? x : null);

export async function trainRewardCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      data: { type: 'string' },
      out: { type: 'string' },
      steps: { type: 'string' },
      lr: { type: 'string' },
      'batch-size': { type: 'string' },
      'seq-len': { type: 'string' },
      heldout: { type: 'string' },
      seed: { type: 'string' },
      threads: { type: 'string' },
      json: { type: 'boolean' },
    },
    strict: true,
  });
  const parsed = argsSchema.safeParse({
    model: values.model,
    data: values.data,
    out: values.out,
    steps: values.steps,
    lr: values.lr,
    batchSize: values['batch-size'],
    seqLen: values['seq-len'],
    heldout: values.heldout,
    seed: values.seed,
    threads: values.threads,
    json: values.json,
  });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    process.stderr.write(`flywheel train reward: ${issue?.path.join('.') ?? ''} ${issue?.message ?? 'invalid arguments'}\n${TRAIN_REWARD_USAGE}\n`);
    return 2;
  }
  const a = parsed.data;
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
    onProgress: (p) => progress(p.step, p.steps, p.loss, p.accuracy, p.lr),
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
