/**
 * Rollouts for PPO: the serving engine (paged KV cache, continuous batching) built in-process from the policy's
 * current weights, sampling every prompt purely (temperature 1, no top-p / top-k, no penalties) with a seed derived
 * from (run seed, step, index) so a run is reproducible and a resumed run samples what the killed one would have.
 * Also how sequences are packed for the training forward. Not the losses (ppo.math.ts) nor the loop (ppo.trainer.ts).
 */
import { createNativeEngine, DEFAULT_SAMPLING, type Checkpoint, type NativeEngine } from '@flywheel/model';
import { policyForward, setLoraEnabled, trainableModelInfo, type PolicyForwardResult, type TrainableModelHandle, type TrainBatch, type WeightMap } from '@flywheel/kernels';

export interface Rollout {
  /** Prompt token ids (the chat template with the assistant opener). */
  prompt: number[];
  /** Sampled token ids, the stop token included when the model stopped (its probability is learned too). */
  response: number[];
  /** Decoded response text (stop token excluded), what the reward model scores. */
  text: string;
  finish: 'stop' | 'length';
}

export interface RolloutEngine {
  /** Samples one response per prompt; all prompts are in flight together (the engine batches them). */
  generate(prompts: readonly number[][], opts: { maxNewTokens: number; seeds: readonly number[]; stop?: readonly string[] }): Promise<Rollout[]>;
  close(): Promise<void>;
}

/** An engine over `weights` (the policy's current f32 weights); rebuild it after each update (the weight sync). */
export function createRolloutEngine(ck: Pick<Checkpoint, 'spec' | 'tokenizer' | 'generation'>, weights: WeightMap, opts: { maxSeqs: number; maxModelLen: number; threads?: number }): RolloutEngine {
  const blockSize = 16;
  const numBlocks = opts.maxSeqs * Math.ceil(opts.maxModelLen / blockSize) + 8;
  const native: NativeEngine = createNativeEngine(
    { spec: ck.spec, weights, tokenizer: ck.tokenizer, generation: ck.generation },
    {
      numBlocks,
      blockSize,
      threads: opts.threads,
      maxModelLen: opts.maxModelLen,
      // One generate call queues its whole batch at once (an eval's prompts x samples, a PPO rollout batch): no
      // waiting limit, which only protects a served engine from more clients than it can queue.
      engine: { maxSeqs: opts.maxSeqs, maxBatchTokens: Math.max(2048, opts.maxSeqs), maxWaiting: Number.MAX_SAFE_INTEGER, enablePrefixCaching: true },
    },
  );
  let n = 0;
  return {
    async generate(prompts, g) {
      return Promise.all(
        prompts.map(async (prompt, i) => {
          const events = native.engine.generate({
            requestId: `rollout-${n++}`,
            promptTokenIds: prompt,
            maxTokens: g.maxNewTokens,
            n: 1,
            stop: g.stop ?? [],
            stopTokenIds: [],
            sampling: { ...DEFAULT_SAMPLING, temperature: 1, topP: 1, topK: 0, seed: g.seeds[i] },
          });
          const response: number[] = [];
          let text = '';
          let finish: 'stop' | 'length' = 'length';
          for await (const e of events) {
            response.push(...e.tokenIds);
            text += e.textDelta;
            if (e.finishReason === 'stop') finish = 'stop';
            else if (e.finishReason !== undefined && e.finishReason !== 'length') throw new Error(`rollout ended with ${e.finishReason}`);
          }
          return { prompt, response, text, finish };
        }),
      );
    },
    close: () => native.close(),
  };
}

/** A packed batch of (prompt + response) sequences with the action slots: slot of action j of row b. */
export interface ActionBatch {
  batch: TrainBatch;
  targets: Int32Array;
  /** 1 at the slot that predicts each response token. */
  sel: Int32Array;
  /** Flat slot index of every action, sequences back to back (the order ppo.math.ts arrays use). */
  slots: Int32Array;
  /** offsets[s]..offsets[s+1]: sequence s's actions in `slots`. */
  offsets: number[];
}

/** Right-padded batch of rollouts; the action for response token j sits at slot (prompt length - 1 + j). */
export function packActions(rollouts: readonly Pick<Rollout, 'prompt' | 'response'>[]): ActionBatch {
  const B = rollouts.length;
  const T = Math.max(2, ...rollouts.map((r) => r.prompt.length + r.response.length));
  const tokens = new Int32Array(B * T);
  const mask = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  const sel = new Int32Array(B * T);
  const slots: number[] = [];
  const offsets = [0];
  rollouts.forEach((r, b) => {
    const seq = [...r.prompt, ...r.response];
    for (let t = 0; t < seq.length; t++) {
      tokens[b * T + t] = seq[t];
      mask[b * T + t] = 1;
      if (t + 1 < seq.length) targets[b * T + t] = seq[t + 1];
    }
    for (let j = 0; j < r.response.length; j++) {
      const slot = b * T + r.prompt.length - 1 + j;
      sel[slot] = 1;
      slots.push(slot);
    }
    offsets.push(slots.length);
  });
  return { batch: { B, T, tokens, mask }, targets, sel, slots: Int32Array.from(slots), offsets };
}

/** Values at `slots` of a (B*T) array, in action order. */
export function gather(a: Float32Array, slots: Int32Array): Float64Array {
  const out = new Float64Array(slots.length);
  for (let i = 0; i < slots.length; i++) out[i] = a[slots[i]];
  return out;
}

/** A (B*T) array with per-action values written at their slots (zeros elsewhere). */
export function scatter(values: ArrayLike<number>, slots: Int32Array, n: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < slots.length; i++) out[slots[i]] = values[i];
  return out;
}

/**
 * The reference policy's forward over packed actions: a frozen copy of the base, or, for a LoRA policy (reference
 * null), the policy itself with its adapters off for this one pass (the frozen base, no second copy of the weights).
 */
export async function referenceForward(policy: TrainableModelHandle, reference: TrainableModelHandle | null, all: ActionBatch): Promise<PolicyForwardResult> {
  if (reference !== null) return policyForward(reference, all.batch, { targets: all.targets, sel: all.sel });
  setLoraEnabled(policy, false);
  try {
    return await policyForward(policy, all.batch, { targets: all.targets, sel: all.sel });
  } finally {
    setLoraEnabled(policy, true);
  }
}

/** MiB held by these trainer models (weights, gradients, AdamW moments, activations); null entries (a LoRA reference) hold none. */
export function modelMemoryMb(models: readonly (TrainableModelHandle | null)[]): number {
  let bytes = 0;
  for (const m of models) if (m !== null) bytes += trainableModelInfo(m).allocatedBytes.total;
  return Math.round((bytes / 2 ** 20) * 100) / 100;
}
