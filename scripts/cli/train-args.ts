/**
 * What the `flywheel train …` commands share: their common options (model, data, out, steps, lr, batch
 * size, sequence length, held-out fraction, seed, threads, --json) parsed into a zod-checked object with
 * per-command defaults, and the progress bar they draw on stderr. Not a training loop.
 */
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { LORA_TARGETS, type LoraTarget } from '@flywheel/kernels';

export interface TrainDefaults {
  steps: number;
  lr: number;
  heldout: number;
}

const trainArgsSchema = (d: TrainDefaults) =>
  z.object({
    model: z.string({ message: '--model DIR is required' }).min(1),
    data: z.string({ message: '--data FILE.jsonl is required' }).min(1),
    out: z.string({ message: '--out DIR is required' }).min(1),
    steps: z.coerce.number().int().positive().default(d.steps),
    lr: z.coerce.number().positive().default(d.lr),
    batchSize: z.coerce.number().int().positive().default(8),
    seqLen: z.coerce.number().int().min(2).optional(),
    heldout: z.coerce.number().min(0).max(0.5).default(d.heldout),
    seed: z.coerce.number().int().nonnegative().default(0),
    threads: z.coerce.number().int().positive().optional(),
    json: z.boolean().default(false),
  });
export type TrainArgs = z.infer<ReturnType<typeof trainArgsSchema>>;

/** A finite number as is, anything else (NaN: nothing held out) as null, for a command's JSON summary. */
export const finiteOrNull = (x: number): number | null => (Number.isFinite(x) ? x : null);

/**
 * The parsed arguments plus a command's own options (`--beta`) by flag name, each a schema of its string value; null
 * after printing one error line and the usage (the caller exits 2).
 */
export function parseTrainArgsWith<E extends z.ZodRawShape>(argv: string[], command: string, usage: string, defaults: TrainDefaults, extra: E) {
  const own = Object.fromEntries(Object.keys(extra).map((name) => [name, { type: 'string' as const }]));
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
      ...own,
    },
    strict: true,
  });
  const parsed = trainArgsSchema(defaults)
    .extend(extra)
    .safeParse({ ...values, batchSize: values['batch-size'], seqLen: values['seq-len'] });
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  process.stderr.write(`flywheel ${command}: ${issue?.path.join('.') ?? ''} ${issue?.message ?? 'invalid arguments'}\n${usage}\n`);
  return null;
}

/** A 30-column bar on a terminal (redrawn in place); about 20 plain lines when stderr is a file or pipe. */
export function drawProgress(step: number, total: number, detail: string): void {
  if (!process.stderr.isTTY && step !== total && step % Math.max(1, Math.floor(total / 20)) !== 0) return;
  const width = 30;
  const done = Math.round((width * step) / total);
  const line = `[${'#'.repeat(done)}${'.'.repeat(width - done)}] step ${step}/${total} ${detail}`;
  process.stderr.write(process.stderr.isTTY ? `\r${line}${step === total ? '\n' : ''}` : `${line}\n`);
}

/** The LoRA flags `train sft`, `train dpo` and `train kto` share (parsed by parseTrainArgsWith as extras). */
export const LORA_FLAGS = {
  'lora-rank': z.coerce.number().int().positive().optional(),
  'lora-alpha': z.coerce.number().positive().optional(),
  'lora-targets': z
    .string()
    .transform((s) => s.split(',').map((t) => t.trim()))
    .pipe(z.array(z.enum(LORA_TARGETS)).min(1))
    .optional(),
};
export const LORA_USAGE = '[--lora-rank R [--lora-alpha A] [--lora-targets q_proj,v_proj,...]]';

/**
 * The LoRA options of parsed flags: undefined without --lora-rank; null (after one line and the usage on stderr) when
 * --lora-alpha or --lora-targets come without it.
 */
export function loraOptionsOf(
  a: { 'lora-rank'?: number; 'lora-alpha'?: number; 'lora-targets'?: LoraTarget[] },
  command: string,
  usage: string,
): { rank: number; alpha?: number; targets?: LoraTarget[] } | undefined | null {
  const rank = a['lora-rank'];
  if (rank === undefined && (a['lora-alpha'] !== undefined || a['lora-targets'] !== undefined)) {
    process.stderr.write(`flywheel ${command}: --lora-alpha and --lora-targets need --lora-rank\n${usage}\n`);
    return null;
  }
  return rank === undefined ? undefined : { rank, alpha: a['lora-alpha'], targets: a['lora-targets'] };
}
