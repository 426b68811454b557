/**
 * `flywheel train sft`: supervised fine-tuning of a Hugging Face checkpoint on chat JSONL (`{"messages": [...]}`,
 * the flywheel's SFT export format). Parses the arguments, draws the progress bar on stderr and, with --json,
 * prints one summary object on stdout; the training loop itself is runSft (libs/train/src/sft.trainer.ts),
 * shared with the BullMQ `sft` job (apps/trainer).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { runSft } from '@flywheel/train';
import { drawProgress, LORA_FLAGS, LORA_USAGE, loraOptionsOf, parseTrainArgsWith } from './train-args';

export const TRAIN_SFT_USAGE =
  'usage: flywheel train sft --model DIR --data FILE.jsonl --out DIR [--steps N] [--lr X] [--batch-size N] [--seq-len N] ' +
  `[--heldout FRACTION] [--seed S] [--threads N] ${LORA_USAGE} [--json]`;

export async function trainSftCommand(argv: string[]): Promise<number> {
  const a = parseTrainArgsWith(argv, 'train sft', TRAIN_SFT_USAGE, { steps: 100, lr: 1e-3, heldout: 0.1 }, LORA_FLAGS);
  if (a === null) return 2;
  const lora = loraOptionsOf(a, 'train sft', TRAIN_SFT_USAGE);
  if (lora === null) return 2;
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
    lora,
    onProgress: (p) => drawProgress(p.step, p.steps, `loss ${p.loss.toFixed(4)} lr ${p.lr.toExponential(2)} ${Math.round(p.tokensPerS)} tok/s`),
  });
  const summary = {
    steps: r.steps,
    train_loss_first: r.trainLossFirst,
    train_loss_last: r.trainLossLast,
    heldout_loss_before: r.heldoutLossBefore,
    heldout_loss_after: r.heldoutLossAfter,
    tokens_per_s: r.tokensPerS,
    mfu: r.mfu,
    ...(r.lora ? { lora: { rank: r.lora.rank, alpha: r.lora.alpha, targets: r.lora.targets, trainable_params: r.numParams } } : {}),
  };
  process.stderr.write(
    `flywheel train sft: ${r.trainCount} train / ${r.heldoutCount} held-out conversations, ${r.numParams} params` +
      (r.lora ? ` (LoRA r=${r.lora.rank} on ${r.lora.targets.join(',')}; ${r.frozenParams} frozen)` : '') +
      '; ' +
      `peak ${(r.peakFlops / 1e9).toFixed(1)} GFLOP/s (f32 matmul probe, this run); wrote ${r.outDir}\n`,
  );
  if (a.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  return 0;
}
