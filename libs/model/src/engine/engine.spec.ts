/**
 * End-to-end engine specs on the real stories260K weights through the TypeScript reference forward:
 * golden greedy ids, batching, preemption, prefix caching, n > 1, stop rules (with vLLM's ignore_eos, min_tokens,
 * stop_token_ids, skip_special_tokens), repetition penalty, cancellation, errors.
 */
import { Engine, DEFAULT_SAMPLING, type EngineConfigInput } from './engine';
import { ContextLengthExceededError, EngineFullError, InvalidRequestError, type GenerateRequest, type SamplingParams, type StepBatch, type TokenEvent } from './engine.types';
import { ReferenceRunner } from './reference-runner';
import { SequenceSampler } from './sampler';
import { committedModelDir } from '../loading/model-files.testing';
import { loadStories, STORIES_GOLDEN_IDS, STORIES_PROMPT_IDS, STORIES_STOP_IDS, type StoriesModel } from './testing/stories260k.fixture';

const GOLDEN_TEXT =
  ', there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. ' +
  'She wanted to play with it, but it was too high.\nLily\'s mom said';

interface ChoiceResult {
  ids: number[];
  text: string;
  finish?: string;
  events: TokenEvent[];
}

async function collect(stream: AsyncIterable<TokenEvent>): Promise<ChoiceResult[]> {
  const out: ChoiceResult[] = [];
  for await (const e of stream) {
    const c = (out[e.choiceIndex] ??= { ids: [], text: '', events: [] });
    expect(c.finish).toBeUndefined();
    c.ids.push(...e.tokenIds);
    c.text += e.textDelta;
    c.events.push(e);
    if (e.finishReason) c.finish = e.finishReason;
  }
  return out;
}

let nextId = 0;
function request(prompt: readonly number[], over: Partial<Omit<GenerateRequest, 'sampling'>> = {}, sampling: Partial<SamplingParams> = {}): GenerateRequest {
  return {
    requestId: `r${nextId++}`,
    promptTokenIds: prompt,
    maxTokens: 64,
    n: 1,
    stop: [],
    stopTokenIds: [],
    ...over,
    sampling: { ...DEFAULT_SAMPLING, temperature: 0, ...sampling },
  };
}

/** Wraps the reference runner to assert one step at a time and to count steps and copies. */
class CheckedRunner extends ReferenceRunner {
  inFlight = false;
  steps = 0;
  copies = 0;
  batchSizes: number[] = [];
  override async run(batch: StepBatch): Promise<Float32Array> {
    if (this.inFlight) throw new Error('two steps in flight');
    this.inFlight = true;
    await new Promise((r) => setImmediate(r)); // give other callers a chance to interleave
    try {
      this.steps++;
      this.batchSizes.push(batch.seqIndex.length === 0 ? 0 : batch.seqIndex[batch.seqIndex.length - 1]! + 1);
      return this.forward(batch);
    } finally {
      this.inFlight = false;
    }
  }
  override async copyBlocks(src: readonly number[], dst: readonly number[]): Promise<void> {
    this.copies += src.length;
    return super.copyBlocks(src, dst);
  }
}

describe('Engine on stories260K (reference forward)', () => {
  let model: StoriesModel;
  beforeAll(() => {
    model = loadStories(committedModelDir());
  });

  function makeEngine(config: Partial<EngineConfigInput> = {}): { engine: Engine; runner: CheckedRunner } {
    const numBlocks = config.numBlocks ?? 64;
    const blockSize = config.blockSize ?? 16;
    const runner = new CheckedRunner(model.spec, model.weights, numBlocks, blockSize);
    const engine = new Engine({
      runner,
      decoder: model.decoder,
      config: { maxModelLen: model.spec.maxPositionEmbeddings, numBlocks, blockSize, maxBatchTokens: 256, maxSeqs: 16, eosTokenIds: STORIES_STOP_IDS, ...config },
    });
    return { engine, runner };
  }

  /** Teacher-forces `ids` through a fresh single-sequence forward and redraws each token with choice `stream`'s sampler. */
  function replay(prompt: readonly number[], ids: readonly number[], sampling: SamplingParams, stream: number): number[] {
    const blocks = 40;
    const runner = new ReferenceRunner(model.spec, model.weights, blocks, 16);
    const sampler = new SequenceSampler(sampling, sampling.seed!, stream, prompt);
    const table = Int32Array.from({ length: blocks }, (_, i) => i);
    const all = [...prompt];
    const drawn: number[] = [];
    let computed = 0;
    for (const id of ids) {
      const chunk = all.slice(computed);
      const logits = runner.forward({
        tokens: Int32Array.from(chunk),
        positions: Int32Array.from(chunk, (_, k) => computed + k),
        seqIndex: new Int32Array(chunk.length),
        blockTables: table,
        maxBlocksPerSeq: blocks,
        logitRows: Int32Array.of(chunk.length - 1),
      });
      computed = all.length;
      drawn.push(sampler.sample(logits).tokenId);
      all.push(id);
    }
    return drawn;
  }

  it('reproduces the 64 golden greedy ids and their text', async () => {
    const { engine } = makeEngine();
    const [choice] = await collect(engine.generate(request(STORIES_PROMPT_IDS)));
    expect(choice!.ids).toEqual(STORIES_GOLDEN_IDS);
    expect(choice!.text).toBe(GOLDEN_TEXT);
    expect(choice!.finish).toBe('length');
    expect(choice!.events.at(-1)!.usage).toEqual({ promptTokens: 5, completionTokens: 64 });
    expect(engine.stats()).toMatchObject({ running: 0, waiting: 0, kvUsage: 0, generationTokens: 64 });
  });

  it('gives the same greedy ids in a batch of 16 with requests arriving, leaving and cancelled, under chunked prefill', async () => {
    const { engine, runner } = makeEngine({ maxBatchTokens: 24 });
    const prompts = [
      [1, 403, 407, 261, 378],
      [1, 432, 383, 286, 261, 376, 298, 315],
      [1, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388],
    ];
    const golden = collect(engine.generate(request(STORIES_PROMPT_IDS)));
    const others: Promise<ChoiceResult[]>[] = [];
    const seeded: { req: GenerateRequest; result: Promise<ChoiceResult[]> }[] = [];
    for (let i = 0; i < 15; i++) {
      if (i % 4 === 3) await new Promise((r) => setTimeout(r, 5)); // late arrivals join at a later step
      const req = request(prompts[i % 3]!, { maxTokens: 5 + ((i * 7) % 60) }, i % 2 ? { temperature: 0.9, topP: 0.9, seed: 1000 + i } : {});
      const result = collect(engine.generate(req));
      if (i % 2) seeded.push({ req, result });
      others.push(result);
      if (i === 6) setTimeout(() => engine.cancel(req.requestId), 20);
    }
    const [g] = await golden;
    expect(g!.ids).toEqual(STORIES_GOLDEN_IDS);
    await Promise.all(others);
    expect(Math.max(...runner.batchSizes)).toBeGreaterThanOrEqual(12);
    // A seeded sampled request gives the same output alone as it did inside the batch.
    const { req, result } = seeded[2]!;
    const alone = await collect(makeEngine().engine.generate({ ...req, requestId: 'alone' }));
    expect(alone[0]!.ids).toEqual((await result)[0]!.ids);
    for (const s of seeded) {
      const ids = (await s.result)[0]!.ids;
      expect(replay(s.req.promptTokenIds, ids, s.req.sampling, 0)).toEqual(ids);
    }
    expect(engine.stats()).toMatchObject({ running: 0, waiting: 0, kvUsage: 0 });
  });

  it('gives identical outputs when sequences are preempted and recomputed (tiny KV pool)', async () => {
    // 8 blocks of 16 = 128 slots for four sequences of up to 69 tokens: preemptions are certain.
    const { engine } = makeEngine({ numBlocks: 8 });
    const sampled = { temperature: 1, topK: 40, seed: 7, presencePenalty: 0.3, frequencyPenalty: 0.2 };
    const runs = [
      collect(engine.generate(request(STORIES_PROMPT_IDS))),
      collect(engine.generate(request([1, 432, 383, 286], {}, sampled))),
      collect(engine.generate(request(STORIES_PROMPT_IDS))),
      collect(engine.generate(request([1, 338, 401], {}, { ...sampled, seed: 8 }))),
    ];
    const results = await Promise.all(runs);
    expect(engine.stats().preemptions).toBeGreaterThan(0);
    expect(results[0]![0]!.ids).toEqual(STORIES_GOLDEN_IDS);
    expect(results[2]![0]!.ids).toEqual(STORIES_GOLDEN_IDS);
    expect(results[0]![0]!.text).toBe(GOLDEN_TEXT);
    const { engine: roomy } = makeEngine();
    const alone = await collect(roomy.generate(request([1, 432, 383, 286], {}, sampled)));
    expect(results[1]![0]!.ids).toEqual(alone[0]!.ids);
    expect(results[1]![0]!.text).toBe(alone[0]!.text);
    expect(replay([1, 432, 383, 286], results[1]![0]!.ids, { ...DEFAULT_SAMPLING, ...sampled }, 0)).toEqual(results[1]![0]!.ids);
    expect(replay([1, 338, 401], results[3]![0]!.ids, { ...DEFAULT_SAMPLING, ...sampled, seed: 8 }, 0)).toEqual(results[3]![0]!.ids);
    expect(engine.stats().kvUsage).toBe(0);
  });

  it('reuses cached prefix blocks and still produces the same tokens', async () => {
    const longPrompt = [...STORIES_PROMPT_IDS, ...STORIES_GOLDEN_IDS.slice(0, 45)]; // 50 tokens: 3 full blocks
    const { engine: cold } = makeEngine({ enablePrefixCaching: false });
    const reference = (await collect(cold.generate(request(longPrompt, { maxTokens: 19 }))))[0]!.ids;
    expect(reference).toEqual(STORIES_GOLDEN_IDS.slice(45, 64));

    const { engine, runner } = makeEngine();
    await collect(engine.generate(request(longPrompt, { maxTokens: 19 })));
    const stepsBefore = runner.steps;
    const again = await collect(engine.generate(request(longPrompt, { maxTokens: 19 })));
    expect(again[0]!.ids).toEqual(reference);
    expect(engine.stats().prefixCacheHitBlocks).toBe(3);
    expect(runner.steps - stepsBefore).toBe(19);
  });

  it('forks n choices from one prefill, sharing the prompt blocks (copy-on-write), each with its own stream', async () => {
    const { engine, runner } = makeEngine();
    const greedy = await collect(engine.generate(request(STORIES_PROMPT_IDS, { n: 3 })));
    expect(greedy.map((c) => c.ids)).toEqual([STORIES_GOLDEN_IDS, STORIES_GOLDEN_IDS, STORIES_GOLDEN_IDS]);
    expect(runner.copies).toBe(2); // the shared partial prompt block, copied for two of the three choices

    const seededReq = (): GenerateRequest => request(STORIES_PROMPT_IDS, { n: 2, maxTokens: 30 }, { temperature: 1, seed: 5 });
    const a = await collect(engine.generate(seededReq()));
    const b = await collect(engine.generate(seededReq()));
    expect(a.map((c) => c.ids)).toEqual(b.map((c) => c.ids));
    expect(a[0]!.ids).not.toEqual(a[1]!.ids);
    // Each choice is exactly what its own sampler stream draws from an unshared, unbatched forward.
    a.forEach((c, i) => expect(replay(STORIES_PROMPT_IDS, c.ids, { ...DEFAULT_SAMPLING, temperature: 1, seed: 5 }, i)).toEqual(c.ids));
    expect(a[1]!.events.at(-1)!.usage).toEqual({ promptTokens: 5, completionTokens: 30 });
    expect(engine.stats()).toMatchObject({ running: 0, kvUsage: 0, promptTokens: 15 });
  });

  it('stops on a stop string split across tokens, keeping the text before it', async () => {
    const { engine } = makeEngine();
    const [c] = await collect(engine.generate(request(STORIES_PROMPT_IDS, { stop: ['ily. S', 'zzz'] })));
    expect(c!.finish).toBe('stop');
    expect(c!.text).toBe(', there was a little girl named L');
    // Generation ends at the token completing the stop string.
    expect(c!.ids).toEqual(STORIES_GOLDEN_IDS.slice(0, c!.ids.length));
    expect(model.decoder.decode([...STORIES_PROMPT_IDS, ...c!.ids])).toContain('Lily. S');
  });

  it('stops on an eos id (the model ends a story with id 1) without adding text', async () => {
    const { engine } = makeEngine();
    const [c] = await collect(engine.generate(request(STORIES_PROMPT_IDS, { maxTokens: 400 })));
    expect(c!.finish).toBe('stop');
    expect(STORIES_STOP_IDS).toContain(c!.ids.at(-1));
    expect(c!.events.at(-1)!.textDelta).toBe('');
    expect(c!.text).toBe(model.decoder.decode([...STORIES_PROMPT_IDS, ...c!.ids]).slice('Once upon a time'.length));
  }, 30_000);

  describe("vLLM's stop extensions (ignore_eos, min_tokens, stop_token_ids, skip_special_tokens)", () => {
    /** The greedy story from the golden prompt up to and including its EOS (the model ends it with id 1). */
    let story: number[];
    beforeAll(async () => {
      const { engine } = makeEngine();
      const [c] = await collect(engine.generate(request(STORIES_PROMPT_IDS, { maxTokens: 400 })));
      story = c!.ids;
      expect(c!.finish).toBe('stop');
      expect(story.slice(0, 64)).toEqual(STORIES_GOLDEN_IDS);
    }, 30_000);

    it('ignore_eos: generates through EOS to exactly max_tokens', async () => {
      const { engine } = makeEngine();
      const maxTokens = story.length + 5;
      const [c] = await collect(engine.generate(request(STORIES_PROMPT_IDS, { maxTokens, ignoreEos: true })));
      expect(c!.finish).toBe('length');
      expect(c!.ids).toHaveLength(maxTokens);
      expect(c!.ids.slice(0, story.length)).toEqual(story); // the EOS is generated and kept going past
    }, 30_000);

    it('min_tokens: EOS is masked until that many tokens, then the choice may stop', async () => {
      const { engine } = makeEngine();
      const minTokens = story.length + 3;
      const [c] = await collect(engine.generate(request(STORIES_PROMPT_IDS, { maxTokens: 400, minTokens })));
      expect(c!.ids.length).toBeGreaterThanOrEqual(minTokens);
      expect(c!.ids.slice(0, story.length - 1)).toEqual(story.slice(0, -1));
      expect(c!.ids.slice(0, minTokens).some((id) => STORIES_STOP_IDS.includes(id))).toBe(false);
      expect(c!.ids[story.length - 1]).not.toBe(story.at(-1)); // where greedy chose EOS, the runner-up was taken
    }, 30_000);

    it('stop_token_ids: stops at the first extra stop id without adding its text', async () => {
      const { engine } = makeEngine();
      const stopId = STORIES_GOLDEN_IDS[10]!;
      const at = STORIES_GOLDEN_IDS.indexOf(stopId);
      const [c] = await collect(engine.generate(request(STORIES_PROMPT_IDS, { stopTokenIds: [stopId] })));
      expect(c!.finish).toBe('stop');
      expect(c!.ids).toEqual(STORIES_GOLDEN_IDS.slice(0, at + 1));
      expect(c!.text).toBe(model.decoder.decode([...STORIES_PROMPT_IDS, ...STORIES_GOLDEN_IDS.slice(0, at)]).slice('Once upon a time'.length));
    });

    it('min_tokens masks stop_token_ids too', async () => {
      const { engine } = makeEngine();
      const stopId = STORIES_GOLDEN_IDS[10]!;
      const at = STORIES_GOLDEN_IDS.indexOf(stopId);
      const [c] = await collect(engine.generate(request(STORIES_PROMPT_IDS, { stopTokenIds: [stopId], minTokens: at + 2, maxTokens: 40 })));
      expect(c!.ids.slice(0, at)).toEqual(STORIES_GOLDEN_IDS.slice(0, at));
      expect(c!.ids.slice(0, at + 2)).not.toContain(stopId);
    });

    it('min_tokens holds stop strings too (as vLLM): a stop string inside the first min_tokens tokens does not end the choice', async () => {
      const { engine } = makeEngine();
      const [early] = await collect(engine.generate(request(STORIES_PROMPT_IDS, { stop: ['ily. S'] })));
      const [held] = await collect(engine.generate(request(STORIES_PROMPT_IDS, { stop: ['ily. S'], minTokens: early!.ids.length + 5, maxTokens: 40 })));
      expect(held!.ids.length).toBeGreaterThan(early!.ids.length + 4);
      expect(held!.text).toContain('Lily. S');
    });

    it('skip_special_tokens false keeps the EOS text in the output; true (default) drops it', async () => {
      const { engine } = makeEngine();
      const maxTokens = story.length + 2;
      const eosText = model.decoder.decode([story.at(-1)!], { skipSpecialTokens: false });
      expect(eosText).not.toBe('');
      const [kept] = await collect(engine.generate(request(STORIES_PROMPT_IDS, { maxTokens, ignoreEos: true, skipSpecialTokens: false })));
      const [skipped] = await collect(engine.generate(request(STORIES_PROMPT_IDS, { maxTokens, ignoreEos: true })));
      expect(kept!.ids).toEqual(skipped!.ids);
      expect(kept!.text).toContain(eosText);
      expect(skipped!.text).not.toContain(eosText);
    }, 30_000);

    it('rejects bad values with InvalidRequestError', () => {
      const { engine } = makeEngine();
      expect(() => engine.generate(request(STORIES_PROMPT_IDS, { stopTokenIds: [9999] }))).toThrow(InvalidRequestError);
      expect(() => engine.generate(request(STORIES_PROMPT_IDS, { minTokens: 65 }))).toThrow(InvalidRequestError);
      expect(() => engine.generate(request(STORIES_PROMPT_IDS, {}, { minP: 2 }))).toThrow(InvalidRequestError);
      expect(() => engine.generate(request(STORIES_PROMPT_IDS, {}, { repetitionPenalty: 0 }))).toThrow(InvalidRequestError);
      return engine.close();
    });
  });

  it('repetition_penalty changes greedy output and equals a replay through the sampler given the prompt', async () => {
    const { engine } = makeEngine();
    const sampling: SamplingParams = { ...DEFAULT_SAMPLING, temperature: 0, seed: 0, repetitionPenalty: 1.5 };
    const [c] = await collect(engine.generate(request(STORIES_PROMPT_IDS, { maxTokens: 32 }, sampling)));
    expect(c!.ids).not.toEqual(STORIES_GOLDEN_IDS.slice(0, 32));
    expect(replay(STORIES_PROMPT_IDS, c!.ids, sampling, 0)).toEqual(c!.ids);
  });

  it('reports logprobs and top_logprobs per token', async () => {
    const { engine } = makeEngine();
    const [c] = await collect(engine.generate(request(STORIES_PROMPT_IDS, { maxTokens: 3 }, { logprobs: true, topLogprobs: 5 })));
    const lp = c!.events[0]!.logprobs![0]!;
    expect(lp.tokenId).toBe(432);
    expect(lp.token).toBe(',');
    expect(lp.topLogprobs).toHaveLength(5);
    expect(lp.topLogprobs[0]).toMatchObject({ token: ',', tokenId: 432, logprob: lp.logprob });
    expect(lp.logprob).toBeLessThan(0);
  });

  it('batches(): one batch per step holds every running choice, the same events in the same order as one by one', async () => {
    const { engine: a } = makeEngine();
    const { engine: b } = makeEngine();
    const req = (id: string) => ({ ...request(STORIES_PROMPT_IDS, { maxTokens: 12, n: 3 }, { temperature: 1, seed: 7 }), requestId: id });
    const oneByOne: TokenEvent[] = [];
    for await (const e of a.generate(req('one'))) oneByOne.push(e);
    const batches: TokenEvent[][] = [];
    for await (const batch of b.generate(req('batched')).batches()) batches.push(batch);
    const strip = (e: TokenEvent) => ({ ...e, requestId: '' });
    expect(batches.flat().map(strip)).toEqual(oneByOne.map(strip));
    // A fast consumer gets one batch per decode step, each with a token of all three choices.
    expect(batches.length).toBeLessThanOrEqual(12);
    expect(batches.every((batch) => new Set(batch.map((e) => e.choiceIndex)).size === 3)).toBe(true);
  });

  it('batches(): a consumer that falls behind gets several steps at once, never reordered', async () => {
    const { engine } = makeEngine();
    const batches: TokenEvent[][] = [];
    for await (const batch of engine.generate(request(STORIES_PROMPT_IDS, { maxTokens: 24 })).batches()) {
      batches.push(batch);
      await new Promise((r) => setTimeout(r, 5)); // slower than a reference step of the tiny model
    }
    expect(batches.some((batch) => batch.length > 1)).toBe(true);
    expect(batches.flat().flatMap((e) => e.tokenIds)).toEqual(STORIES_GOLDEN_IDS.slice(0, 24));
  });

  it('cancels a running request: it ends as cancelled and its blocks are freed', async () => {
    const { engine } = makeEngine();
    const req = request(STORIES_PROMPT_IDS, { maxTokens: 200, n: 2 }, { temperature: 1, seed: 1 });
    const events: TokenEvent[] = [];
    for await (const e of engine.generate(req)) {
      events.push(e);
      if (events.length === 6) expect(engine.cancel(req.requestId)).toBe(true);
    }
    expect(events.filter((e) => e.finishReason === 'cancelled').map((e) => e.choiceIndex).sort()).toEqual([0, 1]);
    expect(events.length).toBeLessThan(20);
    expect(engine.stats()).toMatchObject({ running: 0, waiting: 0, kvUsage: 0 });
  });

  it('cancels when the consumer stops iterating', async () => {
    const { engine } = makeEngine();
    for await (const e of engine.generate(request(STORIES_PROMPT_IDS, { maxTokens: 200 }))) {
      if (e.tokenIds.length) break;
    }
    await new Promise((r) => setTimeout(r, 20));
    expect(engine.stats()).toMatchObject({ running: 0, waiting: 0, kvUsage: 0 });
  });

  it('rejects bad requests with typed errors and bounds the waiting queue', () => {
    const { engine } = makeEngine({ maxWaiting: 2, maxSeqs: 1 });
    expect(() => engine.generate(request([]))).toThrow(InvalidRequestError);
    expect(() => engine.generate(request([1, 9999]))).toThrow(InvalidRequestError);
    expect(() => engine.generate(request([1, 2, 3], { maxTokens: 510 }))).toThrow(ContextLengthExceededError);
    expect(() => engine.generate(request(new Array(513).fill(5), { maxTokens: null }))).toThrow(ContextLengthExceededError);
    const err = (() => {
      try {
        engine.generate(request([1, 2, 3], { maxTokens: 600 }));
      } catch (e) {
        return e as ContextLengthExceededError;
      }
      return null;
    })();
    expect(err?.code).toBe('context_length_exceeded');
    // One sequence runs, two may wait: the fourth request at the latest finds the queue full.
    let accepted = 0;
    const submit = (): void => {
      engine.generate(request([1, 2], { maxTokens: 3 }));
      accepted++;
    };
    expect(() => {
      for (let i = 0; i < 4; i++) submit();
    }).toThrow(EngineFullError);
    expect(accepted).toBeGreaterThanOrEqual(2);
    expect(accepted).toBeLessThanOrEqual(3);
    return engine.close();
  });
});
