// The reward scorer on the committed stories260K with a score head: it scores on a frozen (forward-only) model, and
// its scores are bit-identical to a trainable model's scoreStep over the same token ids, micro-batched or not; a
// causal LM is refused.
import { createTrainableModel, freeTrainableModel, kernelsReference } from '@flywheel/kernels';

import { loadCheckpoint, type Checkpoint } from '../loading';
import { committedModelDir } from '../loading/model-files.testing';
import { createRewardScorer, rewardInputIds, scoreSequences } from './reward.scoring';

async function rewardCheckpoint(): Promise<Checkpoint> {
  const ck = await loadCheckpoint(committedModelDir());
  const score = kernelsReference.randomF32(ck.spec.hiddenSize, kernelsReference.makeRng(4), 0.5);
  return { ...ck, numLabels: 1, weights: new Map([...ck.weights, ['score.weight', score]]) };
}

const PAIRS = [
  { prompt: 'Once upon a time', response: ', there was a little girl named Lily.' },
  { prompt: 'Tell me a story about a dog.', response: 'The dog ran to the park and was happy.' },
  { prompt: 'Tim had a red ball.', response: ' He lost it and was sad forever.' },
  { prompt: 'One day', response: '' },
];

describe('createRewardScorer', () => {
  it('scores exactly what a trainable model scores on the same ids', async () => {
    const ck = await rewardCheckpoint();
    const scorer = createRewardScorer(ck, { threads: 2 });
    const trainable = createTrainableModel(ck.spec, ck.weights, { numLabels: 1, threads: 2 });
    try {
      const got = await scorer.score(PAIRS);
      const seqs = PAIRS.map((p) => rewardInputIds(ck, p.prompt, p.response, ck.spec.maxPositionEmbeddings));
      const want = await scoreSequences(trainable, seqs);
      expect(got).toEqual(want);
      expect(new Set(got).size).toBe(PAIRS.length);
      // Alone (a batch of one, no padding) as in a batch of four: the frozen forward's reused buffers hold no state.
      for (let i = 0; i < PAIRS.length; i++) expect(await scorer.score([PAIRS[i]])).toEqual([got[i]]);
    } finally {
      scorer.free();
      freeTrainableModel(trainable);
    }
  });

  it('refuses a causal LM', async () => {
    const ck = await loadCheckpoint(committedModelDir());
    expect(() => createRewardScorer(ck)).toThrow(/needs a LlamaForSequenceClassification checkpoint with num_labels 1/);
  });
});
