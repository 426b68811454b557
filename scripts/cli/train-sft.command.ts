/**
 * `flywheel train sft`: supervised fine-tuning of a Hugging Face checkpoint on chat JSONL (`{"messages": [...]}`,
 * the flywheel's SFT export format) with the native training path: loss only on assistant tokens (chat template
 * from the tokenizer, plus the EOS that ends each assistant turn when the template omits it), AdamW with warmup +
 * cosine, a held-out split, and an HF checkpoint + resumable training state in --out. Progress goes to stderr;
 * with --json one summary object goes to stdout. Not the BullMQ `sft` job (apps/trainer).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { sftExportLineSchema } from '@flywheel/contracts';
import {
  createTrainableModel,
  freeTrainableModel,
  getOptimizerState,
  getWeights,
  ops,
  optimizerStep,
  trainableModelInfo,
  trainStep,
  zeroGrad,
  DEFAULT_OPTIMIZER,
  type OptimizerConfig,
  type TrainableModelHandle,
} from '@flywheel/kernels';
import { loadCheckpoint, ModelLoadError, writeHfCheckpoint, writeTrainingState, type Checkpoint } from '@flywheel/model';

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

/** One tokenized conversation: ids and, per position t, whether ids[t] is an assistant token (a loss target). */
export interface SftExample {
  ids: number[];
  assistant: boolean[];
}

/**
 * Tokenizes one conversation with the checkpoint's chat template. An assistant turn's tokens are those the
 * rendering of messages[0..i] adds after the generation prompt of messages[0..i-1]; an EOS is appended to each
 * assistant turn the template does not end with one, so the tuned model learns to stop.
 */
export function buildSftExample(ck: Checkpoint, messages: readonly { role: string; content: string }[]): SftExample {
  const tok = ck.tokenizer;
  const eos = ck.generation.eosTokenIds[0] ?? null;
  const ids: number[] = [];
  const assistant: boolean[] = [];
  let cursor = 0; // tokens of the template rendering already emitted (EOS we add is not part of it)
  for (let i = 0; i < messages.length; i++) {
    if (messages[i].role !== 'assistant') continue;
    const prefix = tok.applyChatTemplate(messages.slice(0, i), { addGenerationPrompt: true });
    const through = tok.applyChatTemplate(messages.slice(0, i + 1));
    for (const id of prefix.slice(cursor)) {
      ids.push(id);
      assistant.push(false);
    }
    const reply = through.slice(prefix.length);
    for (const id of reply) {
      ids.push(id);
      assistant.push(true);
    }
    if (eos !== null && reply[reply.length - 1] !== eos) {
      ids.push(eos);
      assistant.push(true);
    }
    cursor = through.length;
  }
  return { ids, assistant };
}

/** xorshift32 with visible state (saved in the training state for resume). */
class Rng {
  constructor(public state: number) {
    this.state = state >>> 0 || 0x9e3779b9;
  }
  next(): number {
    let s = this.state;
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    this.state = s >>> 0;
    return this.state / 4294967296;
  }
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }
}

interface PackedBatch {
  B: number;
  T: number;
  tokens: Int32Array;
  mask: Int32Array;
  targets: Int32Array;
  weights: Float32Array;
  realTokens: number;
}

/** Right-padded batch; position t predicts ids[t+1], weighted 1 when that token is an assistant token. */
function packBatch(examples: SftExample[], seqLen: number): PackedBatch {
  const T = Math.max(2, Math.min(seqLen, Math.max(...examples.map((e) => e.ids.length)))) - 1;
  const B = examples.length;
  const tokens = new Int32Array(B * T);
  const mask = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  const weights = new Float32Array(B * T);
  let realTokens = 0;
  examples.forEach((e, b) => {
    const n = Math.min(e.ids.length, T + 1);
    for (let t = 0; t < n - 1; t++) {
      tokens[b * T + t] = e.ids[t];
      mask[b * T + t] = 1;
      targets[b * T + t] = e.ids[t + 1];
      weights[b * T + t] = e.assistant[t + 1] ? 1 : 0;
      realTokens++;
    }
  });
  return { B, T, tokens, mask, targets, weights, realTokens };
}

async function heldoutLoss(model: TrainableModelHandle, batches: PackedBatch[]): Promise<number> {
  let sum = 0;
  let w = 0;
  for (const b of batches) {
    const r = await trainStep(model, b, { targets: b.targets, weights: b.weights }, { gradScale: 0 });
    sum += r.loss * r.weightSum;
    w += r.weightSum;
  }
  zeroGrad(model);
  return w > 0 ? sum / w : NaN;
}

/** f32 FLOP/s of the engine's matmul on all cores (best of 5 runs of a 256x1024x1024 product). */
function measurePeakFlops(): number {
  const T = 256, n = 1024, o = 1024;
  const x = new Float32Array(T * n).fill(0.5);
  const w = new Float32Array(o * n).fill(0.25);
  ops.matmul(x, w, { T, in: n, out: o });
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const t0 = process.hrtime.bigint();
    ops.matmul(x, w, { T, in: n, out: o });
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return (2 * T * n * o) / best;
}

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
  const modelDir = path.resolve(a.model);
  const ck = await loadCheckpoint(modelDir);
  if (ck.format !== 'hf') throw new ModelLoadError('train sft needs a Hugging Face directory (GGUF is not trainable here)', modelDir);
  const seqLen = Math.min(a.seqLen ?? 256, ck.spec.maxPositionEmbeddings);

  const examples: SftExample[] = [];
  readFileSync(path.resolve(a.data), 'utf8')
    .split('\n')
    .forEach((line, i) => {
      if (line.trim() === '') return;
      let json: unknown;
      try {
        json = JSON.parse(line);
      } catch {
        throw new Error(`${a.data}:${i + 1}: not valid JSON`);
      }
      const r = sftExportLineSchema.safeParse(json);
      if (!r.success) throw new Error(`${a.data}:${i + 1}: not an SFT line ({"messages": [{role, content}, ...]}): ${r.error.issues[0]?.message}`);
      const ex = buildSftExample(ck, r.data.messages);
      if (ex.assistant.some((x, t) => x && t > 0 && t < seqLen)) examples.push(ex);
    });
  if (examples.length === 0) throw new Error(`${a.data}: no conversation with an assistant turn`);

  const rng = new Rng(a.seed + 1);
  rng.shuffle(examples);
  const nHeld = examples.length >= 2 && a.heldout > 0 ? Math.max(1, Math.floor(examples.length * a.heldout)) : 0;
  const held = examples.slice(0, nHeld);
  const train = examples.slice(nHeld);
  const heldBatches: PackedBatch[] = [];
  for (let i = 0; i < held.length; i += a.batchSize) heldBatches.push(packBatch(held.slice(i, i + a.batchSize), seqLen));

  const peak = measurePeakFlops();
  const model = createTrainableModel(ck.spec, ck.weights, { threads: a.threads });
  const numParams = trainableModelInfo(model).numParams;
  const opt: OptimizerConfig = {
    ...DEFAULT_OPTIMIZER,
    lr: a.lr,
    weightDecay: 0.0,
    warmupSteps: Math.min(10, Math.floor(a.steps / 10)),
    totalSteps: a.steps,
  };
  try {
    const before = nHeld > 0 ? await heldoutLoss(model, heldBatches) : NaN;
    let epoch = 0;
    let cursor = 0;
    let order = rng.shuffle(train.map((_, i) => i));
    let first = NaN;
    let last = NaN;
    let tokens = 0;
    let seconds = 0;
    for (let step = 0; step < a.steps; step++) {
      const pick: SftExample[] = [];
      while (pick.length < Math.min(a.batchSize, train.length)) {
        if (cursor >= order.length) {
          epoch++;
          cursor = 0;
          order = rng.shuffle(order);
        }
        pick.push(train[order[cursor++]]);
      }
      const batch = packBatch(pick, seqLen);
      const t0 = process.hrtime.bigint();
      zeroGrad(model);
      const r = await trainStep(model, batch, { targets: batch.targets, weights: batch.weights });
      const o = await optimizerStep(model, opt);
      seconds += Number(process.hrtime.bigint() - t0) / 1e9;
      tokens += batch.realTokens;
      if (step === 0) first = r.loss;
      last = r.loss;
      progress(step + 1, a.steps, r.loss, o.lr, tokens / seconds);
    }
    const after = nHeld > 0 ? await heldoutLoss(model, heldBatches) : NaN;
    const outDir = path.resolve(a.out);
    const baseConfig = JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    await writeHfCheckpoint(outDir, { spec: ck.spec, weights: getWeights(model), baseConfig, tokenizerDir: modelDir });
    const o = getOptimizerState(model);
    await writeTrainingState(outDir, {
      step: o.step,
      m: o.m,
      v: o.v,
      rng: [rng.state],
      data: { epoch, index: cursor },
      optimizer: { ...opt },
      extra: { source: modelDir, data: path.resolve(a.data), seed: a.seed, batchSize: a.batchSize, seqLen },
    });
    const tps = tokens / seconds;
    const summary = {
      steps: a.steps,
      train_loss_first: first,
      train_loss_last: last,
      heldout_loss_before: before,
      heldout_loss_after: after,
      tokens_per_s: tps,
      mfu: (6 * numParams * tps) / peak,
    };
    process.stderr.write(
      `flywheel train sft: ${train.length} train / ${nHeld} held-out conversations, ${numParams} params; ` +
        `peak ${(peak / 1e9).toFixed(1)} GFLOP/s (f32 matmul probe, this run); wrote ${outDir}\n`,
    );
    if (a.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    return 0;
  } finally {
    freeTrainableModel(model);
  }
}
