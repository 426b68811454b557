/**
 * PPO rollouts (createRolloutEngine) on the committed stories260K: one response per prompt within maxNewTokens,
 * ended by an EOS (kept as an action, no text) or by length; a (prompt, seed) samples the same response whatever
 * else is in flight and after the engine is rebuilt; a stop string cuts the same sample where it first appears; and
 * every token is drawn from the model's own distribution at temperature 1 (checked against the naive reference
 * forward). Packing of rollouts is rollout.pack.spec.ts.
 */
import path from 'node:path';
import { kernelsReference } from '@flywheel/kernels';
import { loadCheckpoint, type Checkpoint } from '@flywheel/model';
import { createRolloutEngine, type Rollout } from './rollout';

jest.setTimeout(60_000);

const MODEL = path.resolve(__dirname, '../../../models/stories260K');
const ANIMALS = ['dog', 'cat', 'bird', 'frog'];

describe('createRolloutEngine (stories260K)', () => {
  let ck: Checkpoint;
  let prompts: number[][];
  beforeAll(async () => {
    ck = await loadCheckpoint(MODEL);
    prompts = ANIMALS.map((a) => ck.tokenizer.applyChatTemplate([{ role: 'user', content: `Tell me a story about a ${a}.` }], { addGenerationPrompt: true }));
  });

  /** A response's text decoded after its prompt (a first token's leading space belongs to the response). */
  const decoded = (prompt: number[], ids: number[]): string => ck.tokenizer.decode([...prompt, ...ids]).slice(ck.tokenizer.decode(prompt).length);

  /** A fresh engine (as after a weight sync) for one generate call. */
  const sample = async (ps: number[][], seeds: number[], maxNewTokens: number, stop?: string[]): Promise<Rollout[]> => {
    const maxModelLen = Math.max(...ps.map((p) => p.length)) + maxNewTokens;
    const engine = createRolloutEngine(ck, ck.weights, { maxSeqs: Math.min(64, ps.length), maxModelLen, threads: 1 });
    try {
      return await engine.generate(ps, { maxNewTokens, seeds, stop });
    } finally {
      await engine.close();
    }
  };

  it('takes every prompt of a batch at once, however many (an eval of 20 prompts x 16 samples is 320)', async () => {
    const ps = Array.from({ length: 320 }, (_, i) => prompts[i % prompts.length]!);
    const rollouts = await sample(ps, ps.map((_, i) => i), 2);
    expect(rollouts).toHaveLength(320);
    expect(rollouts.every((r) => r.response.length >= 1 && r.response.length <= 2)).toBe(true);
  });

  it('samples one response per prompt within maxNewTokens, ended by an EOS token (no text) or by length', async () => {
    const maxNewTokens = 40;
    const eos = new Set(ck.generation.eosTokenIds);
    // Two seeds per prompt, so both endings are likely among the eight.
    const ps = [...prompts, ...prompts];
    const rollouts = await sample(ps, ps.map((_, i) => 100 + i), maxNewTokens);
    expect(rollouts).toHaveLength(ps.length);
    rollouts.forEach((r, i) => {
      expect(r.prompt).toEqual(ps[i]);
      expect(r.response.length).toBeGreaterThan(0);
      expect(r.response.length).toBeLessThanOrEqual(maxNewTokens);
      const last = r.response[r.response.length - 1];
      if (r.finish === 'length') {
        expect(r.response).toHaveLength(maxNewTokens);
        expect(r.response.some((t) => eos.has(t))).toBe(false);
        expect(r.text).toBe(decoded(r.prompt, r.response));
      } else {
        // The EOS is the last action (its probability is learned too) and adds no text.
        expect(eos.has(last)).toBe(true);
        expect(r.response.slice(0, -1).some((t) => eos.has(t))).toBe(false);
        expect(r.text).toBe(decoded(r.prompt, r.response.slice(0, -1)));
      }
    });
    expect(new Set(rollouts.map((r) => r.text)).size).toBeGreaterThan(1);
  });

  it('samples the same response for a (prompt, seed) in any batch and after the engine is rebuilt; other seeds differ', async () => {
    const seeds = [11, 12, 13, 14];
    const batch = await sample(prompts, seeds, 24);
    const again = await sample(prompts, seeds, 24);
    expect(again).toEqual(batch);
    // Alone, and in another order with other company: what a resumed run samples for that index.
    expect(await sample([prompts[2]], [seeds[2]], 24)).toEqual([batch[2]]);
    const shuffled = await sample([prompts[3], prompts[0], prompts[1]], [seeds[3], 999, seeds[1]], 24);
    expect(shuffled[0]).toEqual(batch[3]);
    expect(shuffled[2]).toEqual(batch[1]);
    // One prompt, several seeds: pure sampling gives different responses.
    const one = await sample([prompts[0], prompts[0], prompts[0], prompts[0]], [1, 2, 3, 4], 24);
    expect(new Set(one.map((r) => r.response.join(','))).size).toBeGreaterThan(1);
  });

  it('cuts a sample at its first stop string: the completing token is kept, the stop string is not in the text', async () => {
    const seeds = [21, 22, 23, 24];
    const free = await sample(prompts, seeds, 48);
    const cut = await sample(prompts, seeds, 48, ['.']);
    let stoppedByString = 0;
    cut.forEach((r, i) => {
      const f = free[i];
      // The stop changes nothing before it: the same seed samples the same tokens up to the cut.
      expect(f.response.slice(0, r.response.length)).toEqual(r.response);
      const dot = f.text.indexOf('.');
      if (dot >= 0) {
        expect(r.finish).toBe('stop');
        expect(r.text).toBe(f.text.slice(0, dot));
        expect(ck.tokenizer.decode(r.response)).toContain('.');
        stoppedByString++;
      } else {
        expect(r).toEqual(f);
      }
      expect(r.text).not.toContain('.');
    });
    expect(stoppedByString).toBeGreaterThan(0);
  });

  it('samples every token from the model’s own distribution at temperature 1 (no top-k, top-p or temperature)', async () => {
    // Each sampled token is checked against the naive reference forward over its sampled prefix. Under pure sampling
    // log p(x_t) + H_t has mean 0 and variance sum p (log p + H_t)^2, and x_t falls outside the smallest set of
    // tokens holding 90% of the mass with probability q_t: both sums are tested with a 4-sigma z-score.
    const prompt = ck.tokenizer.encode('Once upon a time, there was a');
    const N = 240; // the engine queues at most 256 waiting requests (see maxWaiting in rollout.ts)
    const rollouts = await sample(Array.from({ length: N }, () => prompt), Array.from({ length: N }, (_, i) => 5_000 + i), 8);
    const V = ck.spec.vocabSize;
    let dev = 0;
    let devVar = 0;
    let tail = 0;
    let tailMean = 0;
    let tailVar = 0;
    let tokens = 0;
    for (const r of rollouts) {
      const logits = kernelsReference.refModelLogits(ck.spec, ck.weights, [...r.prompt, ...r.response]);
      r.response.forEach((tok, j) => {
        const row = Array.from(logits.subarray((r.prompt.length - 1 + j) * V, (r.prompt.length + j) * V));
        const max = Math.max(...row);
        const logZ = max + Math.log(row.reduce((s, z) => s + Math.exp(z - max), 0));
        const logp = row.map((z) => z - logZ);
        const p = logp.map(Math.exp);
        const entropy = -p.reduce((s, pi, i) => s + pi * logp[i], 0);
        dev += logp[tok] + entropy;
        devVar += p.reduce((s, pi, i) => s + pi * (logp[i] + entropy) ** 2, 0);
        const byMass = p.map((pi, i) => [pi, i] as const).sort((a, b) => b[0] - a[0]);
        const head = new Set<number>();
        let mass = 0;
        for (const [pi, i] of byMass) {
          if (mass >= 0.9) break;
          head.add(i);
          mass += pi;
        }
        const q = 1 - mass;
        if (!head.has(tok)) tail++;
        tailMean += q;
        tailVar += q * (1 - q);
        tokens++;
      });
    }
    expect(tokens).toBeGreaterThan(N);
    expect(Math.abs(dev / Math.sqrt(devVar))).toBeLessThan(4);
    expect(Math.abs((tail - tailMean) / Math.sqrt(tailVar))).toBeLessThan(4);
    expect(new Set(rollouts.map((r) => r.response[0])).size).toBeGreaterThan(5);
  });
});
