/**
 * `flywheel train sft`: supervised fine-tuning of a Hugging Face checkpoint on chat JSONL (`{"messages": [...]}`,
 * the flywheel's SFT export format). Parses the arguments, draws the progress bar on stderr and, with --json,
 * prints one summary object on stdout; the training loop itself is runSft (libs/model/src/training/sft.trainer.ts),
 * shared with the BullMQ `sft` job (apps/trainer).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { runSft } from '@flywheel/model';

const argsSchema = z.object({
  model: z.string({ message: '--model DIR is required' }).min(1),
  data: z.string({ message: '--data FILE.jsonl is required' }).min(1),
  out: z.string({ message: '--out DIR is required' }).min(1),
  steps: z.coerce.number().int().positive().default(100),
  lr: z.coerce.number().positive().default(1e-3),
  batchSize: z.coerce.number().int().positive().default(8),
  seqLen: z.coerce.number().int().min(2).optional(),
  heldout: z.coerce.number().min(0).max(0.5).default(0.1),
  seed: z.coerce.number().int().nonnegative().default(0),
  threads: z.coerce.number().int().positive().optional(),
  json: z.boolean().default(false),
});

export const TRAIN_SFT_USAGE =
  'usage: flywheel train sft --model DIR --data FILE.jsonl --out DIR [--steps N] [--lr X] [--batch-size N] [--seq-len N] ' +
  '[--heldout FRACTION] [--seed S] [--threads N] [--json]';

function progress(step: number, total: number, loss: number, lr: number, tps: number): void {
  if (!process.stderr.isTTY && step !== total && step % Math.max(1, Math.floor(total / 20)) !== 0) return;
  const width = 30;
  const done = Math.round((width * step) / total);
  const line = `[${'#'.repeat(done)}${'.'.repeat(width - done)}] step ${step}/${total} loss ${loss.toFixed(4)} lr ${lr.toExponential(2)} ${Math.round(tps)} tok/s`;
  process.stderr.write(process.stderr.isTTY ? `\r${line}${step === total ? '\n' : ''}` : `${line}\n`);
}

export async function trainSftCommand(argv: string[]): Promise<number> {
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
    process.stderr.write(`flywheel train sft: ${issue?.path.join('.') ?? ''} ${issue?.message ?? 'invalid arguments'}\n${TRAIN_SFT_USAGE}\n`);
    return 2;
  }
  const a = parsed.data;
  const dataPath = path.resolve(a.data);
  const r = await runSft({
    modelDir: a.model,
    data: { text: readFileSync(dataPath, 'utf8'), source: a.data, origin: dataPath },
    outDir: a.out,
    steps: a.steps,
    lr: a.lr,
    batchSize: a.batchSize,
    seqLen: a.seqLen,
    heldout: a.heldout,
    seed: a.seed,
    threads: a.threads,
    onProgress: (p) => progress(p.step, p.steps, p.loss, p.lr, p.tokensPerS),
  });
  const summary = {
    steps: r.steps,
    train_loss_first: r.trainLossFirst,
    train_loss_last: r.trainLossLast,
    heldout_loss_before: r.heldoutLossBefore,
    heldout_loss_after: r.heldoutLossAfter,
    tokens_per_s: r.tokensPerS,
    mfu: r.mfu,
  };
  process.stderr.write(
    `flywheel train sft: ${r.trainCount} train / ${r.heldoutCount} held-out conversations, ${r.numParams} params; ` +
      `peak ${(r.peakFlops / 1e9).toFixed(1)} GFLOP/s (f32 matmul probe, this run); wrote ${r.outDir}\n`,
  );
  if (a.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  return 0;
}
