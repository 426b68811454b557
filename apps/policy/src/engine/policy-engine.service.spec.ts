import path from 'node:path';
import { Logger } from '@nestjs/common';
import type { ActiveModelEntry, GenerateFrame } from '@flywheel/contracts';
import { loadPolicyConfig } from '@flywheel/config';
import { createServiceMetrics, Readiness, type ActiveModelSourceLike } from '@flywheel/mesh';
import { PolicyEngineService } from './policy-engine.service';

const MODEL = path.resolve(__dirname, '..', '..', '..', '..', 'models', 'stories260K');

function entry(version: string): ActiveModelEntry {
  return {
    version,
    checkpoint: { object: version, sha256: '0'.repeat(64), bytes: 0 },
    parent: null,
    runId: null,
    exports: [],
    promotedAt: new Date().toISOString(),
    promotedBy: 'spec',
    reason: 'spec',
    action: 'promote',
  };
}

/** A KV that never answers at boot and whose watch yields what the spec pushes; every version is stories260K. */
class FakeSource implements ActiveModelSourceLike {
  fetched: string[] = [];
  failing = new Set<string>();
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
  push: (e: ActiveModelEntry) => void = () => undefined;
  async fetch(e: ActiveModelEntry): Promise<string> {
    this.fetched.push(e.version);
    if (this.failing.has(e.version)) throw new Error(`sha256 mismatch for ${e.version}`);
    return MODEL;
  }
}

async function until(probe: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('PolicyEngineService hot swap', () => {
  let service: PolicyEngineService;
  let source: FakeSource;
  let metrics: ReturnType<typeof createServiceMetrics>;

  beforeEach(async () => {
    const config = loadPolicyConfig({ FLYWHEEL_MODEL: MODEL, FLYWHEEL_THREADS: '1', FLYWHEEL_POLICY_VERSION: 'base' });
    metrics = createServiceMetrics('policy', 'spec', 'test');
    source = new FakeSource();
    service = new PolicyEngineService(config, metrics, new Readiness(), source);
    service.onModuleInit();
    await until(() => service.stats() !== null, 'boot');
  });
  afterEach(() => service.onApplicationShutdown());
  beforeAll(() => Logger.overrideLogger(false));

  const request = (requestId: string, maxTokens: number) => ({
    requestId,
    input: { kind: 'text' as const, text: 'Once upon a time', addSpecialTokens: true },
    sampling: { temperature: 0, topP: 1, topK: 0, maxTokens, stop: [], presencePenalty: 0, frequencyPenalty: 0, logitBias: {}, logprobs: false, topLogprobs: 0, n: 1 },
    echo: false,
  });

  it('pins a stream to the version it started on; new requests get the new one; counters never go back', async () => {
    const frames: GenerateFrame[] = [];
    const pinned = service.generate(request('pinned', 200));
    frames.push((await pinned.next()).value as GenerateFrame);
    frames.push((await pinned.next()).value as GenerateFrame);
    const tokensBefore = service.stats()!.generationTokens;

    source.push(entry('v2'));
    await until(() => service.info().policyVersion === 'v2', 'swap to v2');
    const fresh: GenerateFrame[] = [];
    for await (const f of service.generate(request('fresh', 8))) fresh.push(f);
    expect(fresh[0]).toMatchObject({ type: 'start', policyVersion: 'v2' });

    for await (const f of pinned) frames.push(f);
    expect(frames[0]).toMatchObject({ type: 'start', policyVersion: 'base' });
    expect(frames.at(-1)).toMatchObject({ type: 'end', usage: { completionTokens: 200 } });
    // The old engine closed after its last stream; its tokens stay counted.
    expect(service.stats()!.generationTokens).toBeGreaterThanOrEqual(Math.max(tokensBefore, 208));
    expect(service.stats()!.running).toBe(0);
    expect(await metrics.registry.getSingleMetricAsString('flywheel_policy_swaps_total')).toMatch(/outcome="ok".* 1/);
  });

  it('keeps serving the old version when the new one cannot be fetched or loaded', async () => {
    source.failing.add('broken');
    source.push(entry('broken'));
    await until(() => source.fetched.includes('broken'), 'fetch attempted');
    await until(async () => /outcome="failed".* 1/.test(await metrics.registry.getSingleMetricAsString('flywheel_policy_swaps_total')), 'failure counted');
    expect(service.info().policyVersion).toBe('base');
    const frames: GenerateFrame[] = [];
    for await (const f of service.generate(request('after', 4))) frames.push(f);
    expect(frames[0]).toMatchObject({ type: 'start', policyVersion: 'base' });
  });
});
