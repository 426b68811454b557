/**
 * RewardModelService on real reward checkpoints built here (the committed stories260K trunk with a seeded scalar
 * head, as LlamaForSequenceClassification): while loading and with no model it answers `unavailable` (and stays
 * ready without one); once loaded it scores exactly what the model scorer scores and names model and version; a
 * new `models` KV entry swaps the scorer; a model without a chat template refuses chat prompts naming the pair.
 * The KV is a fake source (the swap protocol itself is libs/mesh/src/served-versions.spec.ts).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Logger } from '@nestjs/common';
import type { ActiveModelEntry, RewardScoreRequest } from '@flywheel/contracts';
import { loadRewardConfig } from '@flywheel/config';
import { kernelsReference } from '@flywheel/kernels';
import { createServiceMetrics, MeshError, Readiness, type ActiveModelSourceLike } from '@flywheel/mesh';
import { createRewardScorer, loadCheckpoint, writeHfCheckpoint } from '@flywheel/model';
import { RewardModelService } from './reward-model.service';

jest.setTimeout(60_000);

const MODEL = path.resolve(__dirname, '../../../models/stories260K');

/** A reward checkpoint: the policy trunk with a seeded scalar head; optionally without a chat template. */
async function writeRewardCheckpoint(dir: string, seed: number, opts: { chatTemplate?: boolean } = {}): Promise<void> {
  const base = await loadCheckpoint(MODEL);
  const weights = new Map(base.weights);
  weights.set('score.weight', kernelsReference.randomF32(base.spec.hiddenSize, kernelsReference.makeRng(seed), 0.5));
  const baseConfig = JSON.parse(readFileSync(path.join(MODEL, 'config.json'), 'utf8')) as Record<string, unknown>;
  await writeHfCheckpoint(dir, { spec: base.spec, weights, scoreLabels: 1, baseConfig, tokenizerDir: MODEL });
  if (opts.chatTemplate === false) {
    const file = path.join(dir, 'tokenizer_config.json');
    const { chat_template: _, ...rest } = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    writeFileSync(file, JSON.stringify(rest));
  }
}

const entry = (version: string): ActiveModelEntry => ({
  version,
  checkpoint: { object: version, sha256: '0'.repeat(64), bytes: 0 },
  parent: null,
  runId: null,
  exports: [],
  promotedAt: new Date().toISOString(),
  promotedBy: 'spec',
  reason: 'spec',
  action: 'promote',
});

/** A KV with no entry at boot whose watch yields what the spec pushes; `dirs` maps a version to its checkpoint. */
class FakeSource implements ActiveModelSourceLike {
  constructor(private readonly dirs: Record<string, string>) {}
  push: (e: ActiveModelEntry) => void = () => undefined;
  async current(): Promise<ActiveModelEntry | null> {
    return null;
  }
  async *watch(signal: AbortSignal): AsyncIterable<ActiveModelEntry> {
    while (!signal.aborted) {
      const next = await new Promise<ActiveModelEntry | null>((resolve) => {
        this.push = resolve;
        signal.addEventListener('abort', () => resolve(null), { once: true });
      });
      if (next) yield next;
    }
  }
  async fetch(e: ActiveModelEntry): Promise<string> {
    const dir = this.dirs[e.version];
    if (!dir) throw new Error(`no checkpoint for ${e.version}`);
    return dir;
  }
}

async function until(probe: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const PAIRS: RewardScoreRequest['pairs'] = [
  { prompt: 'Tim had a red ball.', response: ' He lost it and was sad forever.' },
  { prompt: [{ role: 'user', content: 'Tell me a story about a dog.' }], response: 'The dog ran to the park and was happy.' },
  { prompt: 'One day', response: '' },
];

describe('RewardModelService', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'reward-service-spec-'));
  const rmA = path.join(root, 'rm-a');
  const rmB = path.join(root, 'rm-b');
  const rmPlain = path.join(root, 'rm-plain');
  const services: RewardModelService[] = [];

  beforeAll(async () => {
    Logger.overrideLogger(false);
    await writeRewardCheckpoint(rmA, 1);
    await writeRewardCheckpoint(rmB, 2);
    await writeRewardCheckpoint(rmPlain, 1, { chatTemplate: false });
  });
  afterAll(async () => {
    await Promise.all(services.map((s) => s.onApplicationShutdown()));
    rmSync(root, { recursive: true, force: true });
  });

  const boot = (env: Record<string, string>, dirs: Record<string, string> = {}) => {
    const config = loadRewardConfig({ FLYWHEEL_REWARD_THREADS: '1', FLYWHEEL_INSTANCE_ID: 'reward-spec', ...env });
    const metrics = createServiceMetrics('reward', 'reward-spec', 'test');
    const readiness = new Readiness();
    const source = new FakeSource(dirs);
    const service = new RewardModelService(config, metrics, readiness, source);
    services.push(service);
    service.onModuleInit();
    return { service, readiness, source, metrics };
  };

  /** What the model scorer itself gives for `pairs` on `dir`. */
  const direct = async (dir: string, pairs: RewardScoreRequest['pairs']): Promise<number[]> => {
    const scorer = createRewardScorer(await loadCheckpoint(dir), { threads: 1 });
    try {
      return await scorer.score(pairs);
    } finally {
      scorer.free();
    }
  };

  it('answers unavailable while loading, then scores exactly what the model scores, naming model and version', async () => {
    const { service, readiness, metrics } = boot({ FLYWHEEL_REWARD_MODEL: rmA, FLYWHEEL_REWARD_VERSION: 'rm-spec-a' });
    await expect(service.score({ pairs: PAIRS })).rejects.toMatchObject({ name: 'MeshError', code: 'unavailable', message: 'reward model is still loading' });
    expect(readiness.ready).toBe(false);
    expect(service.info()).toMatchObject({ ready: false, version: null });
    await until(() => readiness.ready, 'the reward model to load');

    const ck = await loadCheckpoint(rmA);
    expect(service.info()).toEqual({ model: ck.id, version: 'rm-spec-a', ready: true, contextLength: ck.spec.maxPositionEmbeddings, hasChatTemplate: true, instanceId: 'reward-spec' });
    const reply = await service.score({ pairs: PAIRS });
    expect(reply).toEqual({ scores: await direct(rmA, PAIRS), model: ck.id, version: 'rm-spec-a' });
    expect(reply.scores.every(Number.isFinite)).toBe(true);
    expect(new Set(reply.scores).size).toBe(PAIRS.length);
    // A pair scores the same alone as in a batch.
    expect((await service.score({ pairs: [PAIRS[1]] })).scores).toEqual([reply.scores[1]]);
    expect(await metrics.registry.getSingleMetricAsString('flywheel_reward_requests_total')).toMatch(/outcome="ok"[^\n]* 2/);
  });

  it('swaps to a new KV version: later requests are scored by it and name it', async () => {
    const { service, readiness, source } = boot({ FLYWHEEL_REWARD_MODEL: rmA, FLYWHEEL_REWARD_VERSION: 'rm-spec-a' }, { 'rm-spec-b': rmB });
    await until(() => readiness.ready, 'the reward model to load');
    const before = await service.score({ pairs: PAIRS });
    source.push(entry('rm-spec-b'));
    await until(() => service.info().version === 'rm-spec-b', 'the swap to rm-spec-b');
    const after = await service.score({ pairs: PAIRS });
    expect(after.version).toBe('rm-spec-b');
    expect(after.scores).toEqual(await direct(rmB, PAIRS));
    expect(after.scores).not.toEqual(before.scores);
  });

  it('with no reward model configured or active: ready, but reward.score answers unavailable', async () => {
    const { service, readiness, metrics } = boot({});
    await until(() => readiness.ready, 'boot to decide');
    expect(service.info()).toEqual({ model: null, version: null, ready: false, contextLength: null, hasChatTemplate: null, instanceId: 'reward-spec' });
    const err: unknown = await service.score({ pairs: PAIRS }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MeshError);
    expect(err).toMatchObject({ code: 'unavailable', message: 'no reward model configured' });
    expect(await metrics.registry.getSingleMetricAsString('flywheel_reward_requests_total')).toMatch(/outcome="unavailable"[^\n]* 1/);
  });

  it('refuses chat prompts on a model without a chat template, naming the first such pair; text prompts still score', async () => {
    const { service, readiness } = boot({ FLYWHEEL_REWARD_MODEL: rmPlain, FLYWHEEL_REWARD_VERSION: 'rm-plain' });
    await until(() => readiness.ready, 'the reward model to load');
    expect(service.info().hasChatTemplate).toBe(false);
    await expect(service.score({ pairs: PAIRS })).rejects.toMatchObject({ name: 'MeshError', code: 'invalid_payload', param: 'pairs.1.prompt' });
    const text = [PAIRS[0], PAIRS[2]];
    // Same trunk and head as rm-a: the text prompts score as there.
    expect((await service.score({ pairs: text })).scores).toEqual(await direct(rmA, text));
  });
});
