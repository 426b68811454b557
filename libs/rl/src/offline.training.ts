/**
 * What the offline trainers on fixed responses (DPO, KTO) share: a prompt + response tokenized so that only the
 * response is scored, the summed response log-probs of such sequences under a trainable model and their backward,
 * the policy checkpoint they start from (and a resumed run's weights), the key a resumed run must match, and the AdamW
 * settings of TRL's trainers. No loss, data order or training loop here.
 */
import { createTrainableModel, policyBackward, policyForward, type LoraOptions, type OptimizerConfig, type TrainableModelHandle } from '@flywheel/kernels';
import type { ExportTool } from '@flywheel/contracts';
import { loadCheckpoint, ModelLoadError, type Checkpoint, type RewardChatMessage } from '@flywheel/model';
import { buildSftExample, loadLoraResume, packBatch, type ResumableRunOptions, type SftExample } from '@flywheel/train';

/** One tokenized prompt + response: SFT layout, assistant[t] marks the response tokens (the ones its log-prob sums). */
export type ResponseSide = SftExample;

/**
 * prompt + response with the checkpoint's chat template; only the response's assistant tokens are marked (assistant
 * turns inside the prompt are context). Longer than seqLen: the first tokens are dropped, so the response survives.
 * null when no response token is left to score.
 */
export function responseSide(
  ck: Checkpoint,
  prompt: readonly RewardChatMessage[],
  response: readonly RewardChatMessage[],
  seqLen: number,
  tools: readonly ExportTool[] = [],
): ResponseSide | null {
  const full = buildSftExample(ck, [...prompt, ...response], tools);
  // buildSftExample emits turn by turn, so the prompt's own example is a prefix of the full one.
  const promptLen = buildSftExample(ck, prompt, tools).ids.length;
  const start = Math.max(0, full.ids.length - seqLen);
  const side = { ids: full.ids.slice(start), assistant: full.assistant.map((a, t) => a && t >= promptLen).slice(start) };
  return side.assistant.some((a, t) => a && t > 0) ? side : null;
}

/**
 * One policyForward over sides as a right-padded (B, T) batch: per-side summed response log-probs (B), the token
 * selection (B*T) and the forward a policyBackward of d loss / d logp continues.
 */
export async function forwardSides(model: TrainableModelHandle, sides: readonly ResponseSide[], seqLen: number) {
  const b = packBatch([...sides], seqLen);
  const sel = Int32Array.from(b.weights, (w) => (w !== 0 ? 1 : 0));
  const r = await policyForward(model, b, { targets: b.targets, sel });
  const sums = new Float64Array(b.B);
  for (let i = 0; i < b.B * b.T; i++) sums[Math.floor(i / b.T)] += r.logp[i];
  return { sums, sel, T: b.T, pass: r.pass };
}

/**
 * The backward of a forwardSides pass given d loss / d (summed log-prob) per side: a sequence's log-prob is the sum of
 * its response tokens', so each selected token gets its side's derivative.
 */
export async function backwardSides(model: TrainableModelHandle, f: Pick<Awaited<ReturnType<typeof forwardSides>>, 'sel' | 'T' | 'pass'>, dSide: (row: number) => number): Promise<void> {
  const dlogp = new Float32Array(f.sel.length);
  for (let i = 0; i < dlogp.length; i++) if (f.sel[i] !== 0) dlogp[i] = dSide(Math.floor(i / f.T));
  await policyBackward(model, f.pass, { dlogp });
}

/** The policy checkpoint of `command` (e.g. 'train dpo'): a Hugging Face directory with a chat template. */
export async function loadChatPolicy(modelDir: string, command: string, lines: string): Promise<Checkpoint> {
  const ck = await loadCheckpoint(modelDir);
  if (ck.format !== 'hf') throw new ModelLoadError(`${command} needs a Hugging Face directory (GGUF is not trainable here)`, modelDir);
  if (ck.chatTemplate === null) throw new ModelLoadError(`${command} needs a chat template (${lines} lines are chat messages)`, modelDir);
  return ck;
}

/**
 * The trainable policy: the checkpoint's weights on a fresh run; on a resume outDir's weights, or with LoRA the base
 * plus the adapters saved there (outDir's weights are merged ones). LoRA's A is initialised from `seed`.
 */
export async function createPolicy(
  ck: Checkpoint,
  o: { outDir: string; resumed: boolean; threads?: number; seed: number; lora?: Omit<LoraOptions, 'seed'> },
): Promise<TrainableModelHandle> {
  const initial = !o.resumed ? ck.weights : o.lora ? await loadLoraResume(ck.weights, o.outDir) : (await loadCheckpoint(o.outDir)).weights;
  return createTrainableModel(ck.spec, initial, { threads: o.threads, lora: o.lora ? { ...o.lora, seed: o.seed } : undefined });
}

/** The LoRA options as a training state's key entry (null without LoRA). */
export const loraKey = (lora: Omit<LoraOptions, 'seed'> | undefined): string | null =>
  lora ? JSON.stringify({ rank: lora.rank, alpha: lora.alpha ?? null, targets: lora.targets ?? null }) : null;

/**
 * The training state's key of a DPO or KTO run (resumableState): a resume continues only a run of the same model,
 * data, seed, batch, sequence length, schedule, held-out share, loss settings and LoRA options.
 */
export function offlineRunKey<L extends object>(o: ResumableRunOptions & { lora?: Omit<LoraOptions, 'seed'> }, modelDir: string, seqLen: number, loss: L): Record<string, unknown> {
  return {
    source: modelDir,
    data: o.data.origin ?? o.data.source,
    seed: o.seed,
    batchSize: o.batchSize,
    seqLen,
    steps: o.steps,
    lr: o.lr,
    heldout: o.heldout,
    ...loss,
    lora: loraKey(o.lora),
  };
}

/** AdamW as TRL's DPOTrainer and KTOTrainer use it (β2 0.999, no weight decay, clip 1.0), with warmup + cosine. */
export function offlineOptimizer(lr: number, steps: number): OptimizerConfig {
  return {
    lr,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0,
    maxGradNorm: 1.0,
    warmupSteps: Math.min(10, Math.floor(steps / 10)),
    totalSteps: steps,
    minLrRatio: 0.1,
  };
}
