/**
 * The reward service's NATS handlers through the real Nest transport on a private nats-server (the machine's NATS
 * has other suites' reward replicas in the same queue group): reward.score answers what the model service scores,
 * reward.info its state, and every malformed request — wrong shape, too many pairs, unknown keys, bytes that are not
 * JSON — a typed `invalid_payload` error naming the field, while the service keeps answering.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Logger, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { INestMicroservice } from '@nestjs/common';
import { connect, JSONCodec, type NatsConnection } from 'nats';
import { meshErrorSchema, REWARD_MAX_PAIRS, rewardInfoSchema, rewardScoreResponseSchema, SUBJECTS, type ActiveModelEntry } from '@flywheel/contracts';
import { loadRewardConfig } from '@flywheel/config';
import { kernelsReference } from '@flywheel/kernels';
import { createServiceMetrics, MeshClient, MeshError, natsTransportOptions, Readiness, type ActiveModelSourceLike } from '@flywheel/mesh';
import { loadCheckpoint, writeHfCheckpoint } from '@flywheel/model';
import { RewardController } from './reward.controller';
import { RewardFunctionsService } from './reward-functions.service';
import { RewardModelService } from './reward-model.service';
import { freePort } from '../../../test/support/processes';

jest.setTimeout(60_000);

const MODEL = path.resolve(__dirname, '../../../models/stories260K');

/** No `models` KV entry, ever: the service serves its configured model. */
const noKv: ActiveModelSourceLike = {
  current: async () => null,
  watch: async function* (signal: AbortSignal): AsyncIterable<ActiveModelEntry> {
    await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
  },
  fetch: async () => {
    throw new Error('no KV in this spec');
  },
};

describe('RewardController over NATS', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'reward-controller-spec-'));
  const rmDir = path.join(root, 'rm');
  let nats: ChildProcess;
  let nc: NatsConnection;
  let client: MeshClient;
  let app: INestMicroservice;
  let service: RewardModelService;

  beforeAll(async () => {
    Logger.overrideLogger(false);
    const base = await loadCheckpoint(MODEL);
    const weights = new Map(base.weights);
    weights.set('score.weight', kernelsReference.randomF32(base.spec.hiddenSize, kernelsReference.makeRng(5), 0.5));
    await writeHfCheckpoint(rmDir, { spec: base.spec, weights, scoreLabels: 1, baseConfig: JSON.parse(readFileSync(path.join(MODEL, 'config.json'), 'utf8')), tokenizerDir: MODEL });

    const port = await freePort();
    nats = spawn('nats-server', ['-a', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
    const url = `nats://127.0.0.1:${port}`;
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        nc = await connect({ servers: url });
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    client = new MeshClient(nc);

    const config = loadRewardConfig({ FLYWHEEL_REWARD_MODEL: rmDir, FLYWHEEL_REWARD_VERSION: 'rm-ctl', FLYWHEEL_REWARD_THREADS: '1', FLYWHEEL_INSTANCE_ID: 'reward-ctl-spec' });
    const readiness = new Readiness();
    service = new RewardModelService(config, createServiceMetrics('reward', 'reward-ctl-spec', 'test'), readiness, noKv);
    service.onModuleInit();
    @Module({ controllers: [RewardController], providers: [{ provide: RewardModelService, useValue: service }, { provide: RewardFunctionsService, useValue: new RewardFunctionsService(config) }] })
    class RewardHandlersModule {}
    app = await NestFactory.createMicroservice(RewardHandlersModule, { ...natsTransportOptions('reward', [url], 'reward-ctl-spec'), logger: false });
    await app.listen();
    while (!readiness.ready) await new Promise((r) => setTimeout(r, 10));
  });

  afterAll(async () => {
    await app?.close();
    await service?.onApplicationShutdown();
    await nc?.drain();
    nats?.kill('SIGTERM');
    rmSync(root, { recursive: true, force: true });
  });

  const request = (subject: string, data: unknown) => client.request(subject, data, rewardScoreResponseSchema, { timeoutMs: 10_000 });
  const error = (p: Promise<unknown>): Promise<MeshError> =>
    p.then(
      () => {
        throw new Error('expected a typed error');
      },
      (err: unknown) => {
        expect(err).toBeInstanceOf(MeshError);
        return err as MeshError;
      },
    );

  it('answers reward.score with the model service’s scores and reward.info with its state', async () => {
    const pairs = [
      { prompt: 'Once upon a time', response: ', there was a happy dog.' },
      { prompt: [{ role: 'user' as const, content: 'Tell me a story.' }], response: 'The cat was sad.' },
    ];
    const reply = await request(SUBJECTS.reward.score, { pairs });
    expect(reply).toEqual(await service.score({ pairs }));
    expect(reply).toMatchObject({ version: 'rm-ctl' });
    expect(reply.scores).toHaveLength(2);
    const info = await client.request(SUBJECTS.reward.info, {}, rewardInfoSchema, { timeoutMs: 10_000 });
    expect(info).toEqual(service.info());
    expect(info).toMatchObject({ ready: true, version: 'rm-ctl', instanceId: 'reward-ctl-spec' });
  });

  it('weighs the reward model and verifiable functions by a reward spec, and answers with every part', async () => {
    const pairs = [
      { prompt: 'What is 2 + 3?', response: 'It is 5.', reference: { answer: 5 } },
      { prompt: 'What is 2 + 3?', response: 'Maybe 6', reference: { answer: 5 } },
    ];
    const plain = await service.score({ pairs: pairs.map(({ prompt, response }) => ({ prompt, response })) });
    const rewards = { model: 0.5, functions: [{ name: 'correct', kind: 'numeric', reference: 'answer', weight: 2 }, { name: 'period', kind: 'regex', pattern: '\\.$' }] };
    const reply = await request(SUBJECTS.reward.score, { pairs, rewards });
    expect(reply.components).toEqual({ model: plain.scores, correct: [1, 0], period: [1, 0] });
    expect(reply.scores[0]).toBeCloseTo(0.5 * plain.scores[0] + 2 + 1, 5);
    expect(reply.scores[1]).toBeCloseTo(0.5 * plain.scores[1], 5);
    // Functions alone need no reward model.
    const only = await request(SUBJECTS.reward.score, { pairs, rewards: { model: 0, functions: [{ name: 'correct', kind: 'numeric', reference: 'answer' }] } });
    expect(only).toMatchObject({ scores: [1, 0], version: 'functions', components: { correct: [1, 0] } });
  });

  it.each([
    ['a reference column the prompt lacks', { pairs: [{ prompt: 'a', response: 'b' }], rewards: { model: 0, functions: [{ name: 'x', kind: 'exact', reference: 'gold' }] } }, 'rewards.functions'],
    ['a module while none are allowed', { pairs: [{ prompt: 'a', response: 'b' }], rewards: { model: 0, functions: [{ name: 'x', kind: 'module', path: 'f.js' }] } }, 'rewards.functions'],
    ['a spec with nothing to score', { pairs: [{ prompt: 'a', response: 'b' }], rewards: { model: 0 } }, 'rewards.model'],
  ])('answers %s with invalid_payload', async (_, data, param) => {
    const err = await error(request(SUBJECTS.reward.score, data));
    expect(err.code).toBe('invalid_payload');
    expect(err.param).toBe(param);
  });

  it.each([
    ['no pairs', { pairs: [] }, 'pairs'],
    ['a pair without a response', { pairs: [{ prompt: 'x' }] }, 'pairs.0.response'],
    ['a prompt that is neither text nor messages', { pairs: [{ prompt: 3, response: 'y' }] }, 'pairs.0.prompt'],
    ['too many pairs', { pairs: Array.from({ length: REWARD_MAX_PAIRS + 1 }, () => ({ prompt: 'a', response: 'b' })) }, 'pairs'],
    ['an unknown key', { pairs: [{ prompt: 'a', response: 'b' }], model: 'other' }, null],
  ])('answers %s with invalid_payload naming the field', async (_, data, param) => {
    const err = await error(request(SUBJECTS.reward.score, data));
    expect(err.code).toBe('invalid_payload');
    expect(err.param).toBe(param);
    if (param) expect(err.message.startsWith(`${param}: `)).toBe(true);
  });

  it('answers bytes that are not JSON, and reward.info with a payload, with invalid_payload; then still serves', async () => {
    const reply = await nc.request(SUBJECTS.reward.score, new TextEncoder().encode('{not json'), { timeout: 10_000 });
    const packet = JSONCodec<{ err?: unknown }>().decode(reply.data);
    expect(meshErrorSchema.parse(packet.err).code).toBe('invalid_payload');
    expect((await error(client.request(SUBJECTS.reward.info, { verbose: true }, rewardInfoSchema, { timeoutMs: 10_000 }))).code).toBe('invalid_payload');
    expect((await request(SUBJECTS.reward.score, { pairs: [{ prompt: 'a', response: 'b' }] })).scores).toHaveLength(1);
  });
});
