/**
 * Reward-model inputs and scoring on the native training forward: how a (prompt, response) pair becomes token ids
 * (chat template with the response as the assistant turn, or plain concatenation for a text prompt), right-padded
 * batches, and a scorer over a loaded LlamaForSequenceClassification checkpoint (score read at the last real token).
 * Shared by the reward service and the reward trainer (@flywheel/train); no NATS, queue or CLI code here.
 */
import { createTrainableModel, freeTrainableModel, scoreStep, type TrainableModelHandle, type TrainBatch } from '@flywheel/kernels';
import type { Checkpoint } from '../loading';

export interface RewardChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/**
 * Token ids of one scored sequence. Messages: the chat template of prompt + the response as an assistant message
 * (needs a template). Text: `prompt + response` encoded with special tokens (BOS). Longer than maxLen: the first
 * tokens are dropped, so the end the score is read at survives.
 */
export function rewardInputIds(ck: Pick<Checkpoint, 'tokenizer'>, prompt: string | readonly RewardChatMessage[], response: string, maxLen: number): number[] {
  const ids =
    typeof prompt === 'string'
      ? ck.tokenizer.encode(prompt + response)
      : ck.tokenizer.applyChatTemplate([...prompt, { role: 'assistant', content: response }]);
  return ids.length > maxLen ? ids.slice(ids.length - maxLen) : ids;
}

/** Token ids of a preference side: prompt messages followed by the side's (assistant) messages. */
export function rewardConversationIds(ck: Pick<Checkpoint, 'tokenizer'>, messages: readonly RewardChatMessage[], maxLen: number): number[] {
  const ids = ck.tokenizer.applyChatTemplate(messages);
  return ids.length > maxLen ? ids.slice(ids.length - maxLen) : ids;
}

/** Right-padded (B, T) batch; padding slots hold token 0 with mask 0. */
export function packScoreBatch(seqs: readonly number[][]): TrainBatch {
  const B = seqs.length;
  const T = Math.max(1, ...seqs.map((s) => s.length));
  const tokens = new Int32Array(B * T);
  const mask = new Int32Array(B * T);
  seqs.forEach((s, b) => {
    for (let t = 0; t < s.length; t++) {
      tokens[b * T + t] = s[t];
      mask[b * T + t] = 1;
    }
  });
  return { B, T, tokens, mask };
}

/** Scores of sequences in micro-batches of at most `rows` (numLabels 1: one float per sequence). */
export async function scoreSequences(model: TrainableModelHandle, seqs: readonly number[][], rows = 16): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < seqs.length; i += rows) {
    const scores = await scoreStep(model, packScoreBatch(seqs.slice(i, i + rows)));
    out.push(...scores);
  }
  return out;
}

export interface RewardScorer {
  readonly contextLength: number;
  readonly hasChatTemplate: boolean;
  /** One score per pair, in order. Calls are serialized: the native model keeps one set of activations. */
  score(pairs: readonly { prompt: string | readonly RewardChatMessage[]; response: string }[]): Promise<number[]>;
  free(): void;
}

/**
 * A scorer over a sequence-classification checkpoint with one label. The model is frozen (forward only: weights and
 * one layer's activations), and the scorer keeps the tokenizer, not `ck`, so the checkpoint's JS weight map can be
 * collected once the native copy exists.
 */
export function createRewardScorer(ck: Checkpoint, opts: { threads?: number } = {}): RewardScorer {
  if (ck.numLabels !== 1) {
    throw new Error(`${ck.id}: a reward model needs a LlamaForSequenceClassification checkpoint with num_labels 1 (got ${ck.numLabels ?? 'a causal LM'})`);
  }
  const model = createTrainableModel(ck.spec, ck.weights, { threads: opts.threads, numLabels: 1, frozen: true });
  const contextLength = ck.spec.maxPositionEmbeddings;
  const tokens = { tokenizer: ck.tokenizer };
  let queue: Promise<unknown> = Promise.resolve();
  return {
    contextLength,
    hasChatTemplate: ck.chatTemplate !== null,
    score(pairs) {
      const seqs = pairs.map((p) => rewardInputIds(tokens, p.prompt, p.response, contextLength));
      const run = queue.then(() => scoreSequences(model, seqs));
      queue = run.catch(() => undefined);
      return run;
    },
    free: () => freeTrainableModel(model),
  };
}
